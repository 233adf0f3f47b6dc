"""Hostile inputs other than model folders and outputs (issue 24): URLs whose password holds
``@``, ``/``, ``:`` or ``%``-escapes are masked everywhere; symlinked folders are scanned once
(loops end) and dangling links named; the library API turns a raising frame iterator, a
non-iterable ``classify_many`` argument and an internal error in one item into typed one-line
errors; pickle refusals name the global or the opcode, without torch's warning."""

from __future__ import annotations

import json
import logging
import pickle
import shutil

import numpy as np
import pytest
from clips import synthetic_frames, write_clip
from conftest import run_cli, save_tiny_model

from fvdeploy.errors import FvdeployError, InputError, VideoError
from fvdeploy.io.urls import redact, redact_text

SECRET = "P@ss/w:rd%2F"
SECRET_PIECES = ("P@ss", "ss/w", "w:rd", "%2F", "ssword", "pa/ss", "pa:ss", "p%40ss", "secret", "pa?ss")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=6)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "a.mp4", synthetic_frames(12, 32, 40, seed=2))


@pytest.fixture(scope="module")
def clf(model_dir):
    from fvdeploy.runtime import Classifier

    return Classifier.load(model_dir, device="cpu")


# -- credentials ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url,shown",
    [
        (f"http://admin:{SECRET}@10.0.0.1:8080/v.mp4", "http://admin:***@10.0.0.1:8080/v.mp4"),
        ("http://admin:P@ssword@host/v.mp4", "http://admin:***@host/v.mp4"),
        ("rtsp://admin:pa/ss@host/stream", "rtsp://admin:***@host/stream"),
        ("rtsp://admin:pa:ss@host:554/stream", "rtsp://admin:***@host:554/stream"),
        ("rtsp://admin:p%40ss@host/stream", "rtsp://admin:***@host/stream"),
        ("rtsp://admin:pa?ss@host/stream", "rtsp://admin:***@host/stream"),
        ("rtsp://:secret@host/stream", "rtsp://:***@host/stream"),
        ("rtsp://admin:secret@[::1]:554/s?contact=a@b", "rtsp://admin:***@[::1]:554/s?contact=a@b"),
        ("rtsp://admin@host/stream", "rtsp://admin@host/stream"),  # a user without a password stays
        ("http://host:8080/v.mp4?mail=a@b", "http://host:8080/v.mp4?mail=a@b"),  # no userinfo at all
        ("http://host/users/@me/v.mp4", "http://host/users/@me/v.mp4"),
        ("/videos/a@b:c.mp4", "/videos/a@b:c.mp4"),  # a path is no URL
    ],
)
def test_redact_masks_every_spelling_of_a_password(url, shown):
    assert redact(url) == shown
    assert redact(redact(url)) == shown
    assert redact_text(f"cannot open {url}: refused") == f"cannot open {shown}: refused"


def test_the_url_helpers_are_still_importable_from_sources():
    from fvdeploy.io import sources, urls

    assert sources.redact is urls.redact and sources.is_url is urls.is_url and sources.LIVE_SCHEMES == urls.LIVE_SCHEMES


def _no_secret(text: str) -> None:
    leaked = [piece for piece in SECRET_PIECES if piece in text]
    assert not leaked, f"{leaked} in {text!r}"


def test_a_failing_urls_record_and_messages_hold_no_password(model_dir):
    url = f"http://admin:{SECRET}@127.0.0.1:9/v.mp4?token=1"  # port 9: refused at once; '?': not a glob
    r = run_cli("-v", "classify", url, "-m", model_dir, "--json")
    assert r.returncode == 1
    record = json.loads(r.stdout.splitlines()[0])
    assert record["path"] == "http://admin:***@127.0.0.1:9/v.mp4?token=1" and record["error"]
    _no_secret(r.stdout + r.stderr)


def test_classify_many_names_a_failing_url_without_its_password(clf):
    (result,) = clf.classify_many([f"rtsp://admin:{SECRET}@127.0.0.1:9/stream"])
    assert result.path == "rtsp://admin:***@127.0.0.1:9/stream" and result.error
    _no_secret(json.dumps(result.to_dict()))


def test_watch_records_and_messages_hold_no_password(model_dir):
    r = run_cli("-v", "watch", f"rtsp://admin:{SECRET}@127.0.0.1:9/stream", "-m", model_dir, "--json", "--retries", 0)
    assert r.returncode == 1
    end = json.loads(r.stdout.splitlines()[-1])
    assert end["type"] == "end" and end["stream"] == "rtsp://admin:***@127.0.0.1:9/stream"
    _no_secret(r.stdout + r.stderr)


# -- folders --------------------------------------------------------------------------------------
def test_symlinked_folders_are_scanned_once_and_loops_end(clip, tmp_path):
    from fvdeploy.io.video import describe_skipped, scan_folder

    real = tmp_path / "real"
    (real / "deeper").mkdir(parents=True)
    shutil.copy(clip, real / "deeper" / "v.mp4")
    root = tmp_path / "root"
    root.mkdir()
    (root / "videos").symlink_to(real, target_is_directory=True)
    (real / "deeper" / "back").symlink_to(root, target_is_directory=True)  # a loop through the link
    (root / "again").symlink_to(real, target_is_directory=True)  # a second link to one folder
    (root / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    scan = scan_folder(root)
    assert [p.name for p in scan.videos] == ["v.mp4"]
    line = describe_skipped(root, scan.skipped)
    assert "\n" not in line and "skipped 1 dangling link(s): gone.mp4 -> " in line and "nowhere.mp4" in line
    assert "already scanned" in line


def test_the_cli_classifies_behind_a_link_and_names_dangling_links(model_dir, clip, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(clip, real / "v.mp4")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "sub").symlink_to(real, target_is_directory=True)
    (folder / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    r = run_cli("classify", folder, "-m", model_dir, "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["path"] for x in r.stdout.splitlines()] == [str(folder / "sub" / "v.mp4")]
    (warning,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert warning.startswith("warning: ") and "dangling link(s): gone.mp4" in warning


# -- the API --------------------------------------------------------------------------------------
def frames_then_raise(n: int = 5):
    for _ in range(n):
        yield np.zeros((32, 40, 3), np.uint8)
    raise ValueError("camera unplugged")


def test_a_raising_frame_iterator_is_a_video_error_naming_the_frame(clf):
    with pytest.raises(VideoError, match=r"frame iterator raised ValueError at frame 5: camera unplugged"):
        clf.classify(frames_then_raise(), fps=25)


def test_classify_many_gives_an_error_record_for_a_raising_iterator_and_logs_no_traceback(clf, caplog):
    with caplog.at_level(logging.DEBUG, logger="fvdeploy"):
        results = list(clf.classify_many([frames_then_raise(), frames_then_raise(3)]))
    assert [r.error for r in results] == [
        "<iterator>: the frame iterator raised ValueError at frame 5: camera unplugged",
        "<iterator>: the frame iterator raised ValueError at frame 3: camera unplugged",
    ]
    assert not [rec for rec in caplog.records if rec.exc_info]


def test_classify_many_of_a_non_iterable_is_a_typed_error(clf):
    with pytest.raises(InputError, match="classify_many takes an iterable of sources") as e:
        clf.classify_many(5)
    assert isinstance(e.value, FvdeployError) and isinstance(e.value, TypeError)


def test_an_internal_error_in_one_item_is_its_record_and_a_traceback_only_at_debug(clf, clip, caplog):
    from fvdeploy.io.sources import FrameSource

    class Buggy(FrameSource):  # a frame source with a bug: an internal error, not bad input
        kind = decoder = "iterator"

        def _batches(self, max_frames):
            raise KeyError("a bug")
            yield

    for level, traceback_expected in ((logging.WARNING, False), (logging.DEBUG, True)):
        caplog.clear()
        with caplog.at_level(level, logger="fvdeploy"):
            results = list(clf.classify_many([Buggy("buggy"), str(clip)]))
        assert results[0].error == "internal error KeyError: 'a bug'" and results[1].error is None
        assert any("internal error" in rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR)
        assert any(rec.exc_info for rec in caplog.records) == traceback_expected


# -- pickles --------------------------------------------------------------------------------------
def test_a_raw_pickle_is_refused_in_one_line_without_torchs_warning(tmp_path):
    path = tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps({"state_dict": {"a": [1.0]}}, protocol=4))
    r = run_cli("import-checkpoint", path, "--out-dir", tmp_path / "out")
    assert r.returncode == 1
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "refused pickle opcode FRAME (149)" in line and "not a torch.save checkpoint" in line
    assert "UserWarning" not in r.stderr


def test_an_opcode_that_loads_code_is_named_as_such(tmp_path):
    from fvdeploy.errors import ModelError
    from fvdeploy.importers.reading import read_checkpoint

    path = tmp_path / "inst.pth"
    path.write_bytes(b"(ios\nsystem\n.")  # INST: import os.system and call it (protocol 0)
    with pytest.raises(ModelError, match=r"inst.pth: refused a pickle opcode that loads code \(INST\)"):
        read_checkpoint(path)
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # GLOBAL os.system (protocol 2)
    with pytest.raises(ModelError, match=r"inst.pth: refused to unpickle os.system"):
        read_checkpoint(path)


# -- the memory-bomb inputs (for the decode-budget tests of the engine) -----------------------------
def test_write_h264_makes_frames_of_the_size_asked(tmp_path):
    import cv2
    from clips import write_h264

    path = write_h264(tmp_path / "big.mp4", 1024, 768, frames=2)
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (768, 1024, 3) and path.stat().st_size < 50_000
