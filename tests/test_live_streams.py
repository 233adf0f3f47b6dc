"""Network streams told true, against real servers on 127.0.0.1 (tests/live_servers.py): an RTSP
server (GStreamer), an HTTP server that stalls half-way, a live HLS producer (ffmpeg) that dies.

Stream time on RTSP (the frames FFmpeg buffered keep their own times), stalls seen as stalls (a
live stream: Dropped, a gap, reconnections, then the error; a finite URL: partial, with what
happened), and what is not supported said so (DASH, HDR, a file still being written)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
from conftest import run_cli, save_tiny_model
from live_servers import (
    FolderServer,
    HlsProducer,
    RtspServer,
    StallingHttpServer,
    audio_first_clip,
    cut_frames,
    ffprobe,
    make_clip,
    missing_ffmpeg,
    missing_rtsp,
)

from fvdeploy.errors import VideoError
from fvdeploy.io import FrameBatch, PyAVSource, open_source
from fvdeploy.io.sources import Dropped, open_for_writing
from fvdeploy.records import Gap, StreamEnd, WindowResult
from fvdeploy.runtime import Classifier
from fvdeploy.watch import watch
from fvdeploy.watch.options import StreamSpec

needs_ffmpeg = pytest.mark.skipif(missing_ffmpeg() is not None, reason=missing_ffmpeg() or "")
needs_rtsp = pytest.mark.skipif(missing_rtsp() is not None, reason=missing_rtsp() or "")


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return Classifier.load(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=1), device="cpu")


# Every server here stops by itself, but after minutes, not seconds: on a loaded machine (load 10 on
# 2 cores, seen in the suite) a watch took over a minute to its second window, and a server that
# had quit by then looked like a stream that ended.
@pytest.fixture(scope="module")
def rtsp():
    if missing_rtsp():
        pytest.skip(missing_rtsp())
    with RtspServer(fps=25, seconds=600) as server:
        yield server


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """500-frame test patterns at 25 fps: an MP4 (index at the front) and an MPEG-TS."""
    if missing_ffmpeg():
        pytest.skip(missing_ffmpeg())
    d = tmp_path_factory.mktemp("clips")
    h264 = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "25")
    return {
        "mp4": make_clip(d / "half.mp4", *h264, "-movflags", "+faststart", frames=500),
        "ts": make_clip(d / "half.ts", *h264, frames=500),
    }


def _frames(src, n: int) -> tuple[list[float], list]:
    pts, markers = [], []
    for item in src.batches(8):
        if isinstance(item, FrameBatch):
            pts += item.pts.tolist()
            if len(pts) >= n:
                break
        else:
            markers.append(item)
    return pts, markers


# -- stream time ---------------------------------------------------------------------------------------
@needs_rtsp
def test_rtsp_frames_carry_the_streams_own_times(rtsp):
    src = open_source(rtsp.url)
    try:
        assert isinstance(src, PyAVSource) and src.live and src.time_basis == "stream" and src.fps == 25
        pts, markers = _frames(src, 50)
    finally:
        src.close()
    assert not markers
    # from the first frame, 40 ms apart: the frames FFmpeg buffered while opening keep their own
    # times (OpenCV gave 0.0, 0.0, 40.0 ms here and the probe fell back to arrival time)
    assert pts[0] == 0.0
    np.testing.assert_allclose(np.diff(pts[:50]), 0.04, atol=1e-3)


@needs_rtsp
def test_rtsp_windows_in_seconds_hold_a_windows_worth_of_frames(rtsp, clf):
    gen = watch(clf, rtsp.url, window_s=1.0, stride_s=1.0)
    windows = []
    try:
        for item in gen:
            if isinstance(item, WindowResult):
                windows.append(item)
                if len(windows) == 3:
                    break
            assert not isinstance(item, StreamEnd), item
    finally:
        gen.close()
    assert all(w.time_basis == "stream" for w in windows)
    for k, w in enumerate(windows):
        assert (w.start_s, w.end_s) == pytest.approx((k * 1.0, k * 1.0 + 1.0), abs=0.041)
        # a live reader drops frames when the device falls behind, so a window may hold fewer;
        # never more than a window of stream time (the first "2 s" window held 77 frames of 25 fps)
        assert 1 <= w.end_frame - w.start_frame <= 26
    assert any(24 <= w.end_frame - w.start_frame <= 26 for w in windows)


# -- stalls of live streams ----------------------------------------------------------------------
@needs_rtsp
def test_an_rtsp_server_that_stalls_gives_a_gap_and_no_window_spans_the_silence(clf):
    with RtspServer(fps=25, seconds=300) as server:
        source = PyAVSource(server.url, stall_timeout_s=1.0, open_timeout_s=5.0, retries=5, retry_delay_s=0.2)
        gen = watch(clf, StreamSpec("cam", source), window_s=1.0, stride_s=1.0)
        before, after, gaps = [], [], []
        deadline = time.monotonic() + 240
        try:
            for item in gen:
                assert time.monotonic() < deadline, "the watch stalled"
                if isinstance(item, WindowResult):
                    (after if gaps else before).append(item)
                    if len(before) == 2 and not gaps and server.proc is not None:
                        server.pause()  # SIGSTOP: the server holds its connections and sends nothing
                        threading.Timer(2.0, server.resume).start()
                    if len(after) == 2:
                        break
                elif isinstance(item, Gap):
                    gaps.append(item)
                elif isinstance(item, StreamEnd):
                    pytest.fail(f"the stream ended instead of reconnecting: {item.error}")
        finally:
            gen.close()
            server.resume()
    assert len(gaps) == 1 and gaps[0].attempts >= 1 and gaps[0].end_s > gaps[0].start_s
    gap = gaps[0]
    assert all(w.end_s <= gap.start_s + 1e-6 for w in before)
    assert all(w.start_s >= gap.end_s - 1e-6 and w.start_frame >= gap.after_frame for w in after)
    assert all(w.end_s - w.start_s <= 1.0 + 1e-6 for w in before + after)  # none spans the silence


@needs_rtsp
def test_an_rtsp_server_that_stays_stalled_ends_with_the_error(clf):
    with RtspServer(fps=25, seconds=300) as server:
        source = PyAVSource(server.url, stall_timeout_s=1.0, open_timeout_s=1.0, retries=1, retry_delay_s=0.1)
        items = []
        for item in watch(clf, StreamSpec("cam", source), window_s=1.0, stride_s=1.0):
            items.append(item)
            if isinstance(item, WindowResult) and item.index == 1:
                server.pause()
    end = items[-1]
    assert isinstance(end, StreamEnd) and not end.ok
    assert re.search(r"the stream stalled \(no data for 1 s\) and 1 reconnection attempts failed", end.error)
    windows = [i for i in items if isinstance(i, WindowResult)]
    assert all(w.end_s - w.start_s <= 1.0 + 1e-6 for w in windows)


@pytest.mark.slow  # about 9 s: the producer writes 3 one-second segments before a player may start
@needs_ffmpeg
def test_a_live_playlist_whose_producer_dies_is_a_stall(tmp_path):
    with HlsProducer(tmp_path / "hls", fps=25, seconds=300) as producer:
        src = open_source(producer.url, retries=1, retry_delay_s=0.1)
        assert isinstance(src, PyAVSource) and src.live and src.time_basis == "stream"
        pts, index, markers = [], [], []
        with pytest.raises(VideoError) as raised:
            for item in src.batches(8):
                if isinstance(item, FrameBatch):
                    pts += item.pts.tolist()
                    index += item.index.tolist()
                    if len(pts) >= 30 and producer.proc.poll() is None:
                        producer.kill()  # the playlist stays, stale
                else:
                    markers.append(item)
    assert [type(m) for m in markers] == [Dropped]  # a stale playlist is no reconnection
    assert "its live playlist listed no new segment" in raised.value.args[0]
    assert "1 reconnection attempts failed" in raised.value.args[0]
    assert index == list(range(len(index))) and np.all(np.diff(pts) > 0)  # nothing replayed


@pytest.mark.slow  # about 15 s: the CLI's own stall timeout (3 s) and open timeout (10 s)
@needs_ffmpeg
def test_watch_exits_1_with_the_error_when_a_live_playlists_producer_dies(tmp_path, clf):
    model = save_tiny_model(tmp_path / "tiny", seed=1)
    with HlsProducer(tmp_path / "hls", fps=25, seconds=300) as producer:
        threading.Timer(4.0, producer.kill).start()
        r = run_cli("watch", producer.url, "--model", model, "--window", "1", "--stride", "1", "--retries", "1",
                    "--retry-delay", "0.1", "--json", "-q")  # fmt: skip
    end = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1 and end["type"] == "end" and end["frames"] > 0
    assert "its live playlist listed no new segment" in end["error"] and "reconnection attempts failed" in end["error"]
    assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr


# -- finite URLs that stall ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mp4", "ts"])
def test_a_file_over_http_that_stalls_half_way_is_partial_and_says_so(clips, kind, clf):
    clip = clips[kind]
    with StallingHttpServer(clip, stall_after=clip.stat().st_size // 2, hold_s=30) as server:
        src = open_source(server.url, stall_timeout_s=1.0)
        assert isinstance(src, PyAVSource) and not src.live and src.time_basis == "stream"
        result = clf.classify(src)
    assert result.error is None and result.partial
    assert 200 <= result.num_frames < 500
    announced = "500 announced" if kind == "mp4" else "no length announced"
    assert result.warnings == [
        f"{server.url}: the source stalled at {result.duration_s:.1f} s after {result.num_frames} frames "
        f"(no data for 1 s); {announced}"
    ]


def test_a_file_over_http_is_read_whole_with_times_from_its_start(clips, clf):
    clip = clips["ts"]  # an MPEG-TS starts at 1.4 s: its first frame is at 0.0, as ffmpeg -ss counts
    with StallingHttpServer(clip, stall_after=clip.stat().st_size, hold_s=1) as server:
        result = clf.classify(server.url)
    assert result.num_frames == 500 and not result.partial and result.warnings == []
    assert result.run["decoder"] == "pyav"
    assert result.segments[0].start_s == 0.0 and result.duration_s == pytest.approx(20.0)


# -- seconds on the file's timeline ---------------------------------------------------------------
@needs_ffmpeg
def test_an_audio_first_files_seconds_are_what_ffmpeg_ss_cuts(tmp_path, clf):
    clip = audio_first_clip(tmp_path / "audio_first.mp4")
    start = float(ffprobe(clip, "format=start_time")["format"]["start_time"])
    pts = [float(f["pts_time"]) - start for f in ffprobe(clip, "frame=pts_time")["frames"]]
    assert pts[0] >= 2.9  # the video starts 3 s after the audio (and the container)
    result = clf.classify(str(clip))
    assert result.segments[0].start_s == pytest.approx(pts[0], abs=1e-3)
    for seg in result.segments:
        assert seg.start_s == pytest.approx(pts[seg.start_frame], abs=1e-3)
    for seg in result.segments[:3]:
        got = cut_frames(clip, seg.start_s, seg.end_s)
        assert abs(got[0] - seg.start_frame) <= 1 and abs(got[-1] + 1 - seg.end_frame) <= 1, (seg, got[0], got[-1])


# -- not supported, said so ----------------------------------------------------------------------
def test_a_dash_manifest_is_a_one_line_error_naming_dash(tmp_path):
    for target in ("http://127.0.0.1:9/live/manifest.mpd", "https://user:secret@example.invalid/a.mpd?x=1"):
        with pytest.raises(VideoError, match=r"a DASH manifest \(\.mpd\); DASH is not supported") as e:
            open_source(target)
        assert "\n" not in str(e.value) and "secret" not in str(e.value)
    local = tmp_path / "stream.mpd"
    local.write_text("<MPD/>")
    with pytest.raises(VideoError, match="DASH is not supported"):
        open_source(str(local))


def test_a_protocol_ffmpeg_lacks_is_a_one_line_error():
    with pytest.raises(VideoError, match=r"srt:// is not supported: the FFmpeg in PyAV's wheel has no srt protocol"):
        open_source("srt://127.0.0.1:9/cam")


@needs_ffmpeg
def test_a_dash_manifest_found_by_its_content_is_refused_too(tmp_path):
    folder = tmp_path / "dash"
    folder.mkdir()
    make_clip(folder / "manifest.mpd", "-c:v", "libx264", "-preset", "ultrafast", "-f", "dash", frames=50)
    shutil.copy(folder / "manifest.mpd", folder / "manifest")  # no .mpd in the URL
    http = FolderServer(folder)
    try:
        with pytest.raises(VideoError, match="DASH is not supported"):
            open_source(http.url("manifest"))
        r = run_cli("classify", http.url("manifest.mpd"), "--json")
    finally:
        http.stop()
    assert r.returncode == 1 and "DASH is not supported" in r.stderr and "byte ranges" not in r.stderr


@needs_ffmpeg
def test_hdr_video_gets_a_warning_that_it_is_not_tone_mapped(tmp_path, clf):
    clip = make_clip(
        tmp_path / "hdr.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", frames=12,
    )  # fmt: skip
    result = clf.classify(str(clip))
    assert not result.partial and result.num_frames == 12
    assert result.warnings == [
        f"{clip}: HDR video (PQ (SMPTE 2084), BT.2020 primaries) is not tone-mapped: frames are converted to "
        "8-bit as if SDR, so colours and brightness differ from what an HDR display shows"
    ]
    sdr = make_clip(tmp_path / "sdr.mp4", "-c:v", "libx264", "-preset", "ultrafast", frames=12)
    assert clf.classify(str(sdr)).warnings == []


@needs_ffmpeg
def test_a_file_that_grew_while_it_was_read_is_read_to_its_new_end(tmp_path):
    clip = make_clip(tmp_path / "growing.ts", "-c:v", "libx264", "-preset", "ultrafast", frames=100)
    more = make_clip(tmp_path / "more.ts", "-c:v", "libx264", "-preset", "ultrafast", frames=100).read_bytes()
    src = open_source(str(clip))
    first = True
    for item in src.batches(16):
        if first and isinstance(item, FrameBatch):  # the recorder appends and finishes while we read
            with open(clip, "ab") as f:
                f.write(more)
            first = False
    assert src.frames_read == 200 and not src.partial and src.warnings == []  # FFmpeg read on to the new end


@needs_ffmpeg
def test_a_file_changed_after_its_end_was_read_is_not_called_complete(tmp_path):
    clip = make_clip(tmp_path / "growing.ts", "-c:v", "libx264", "-preset", "ultrafast", frames=50)
    src = open_source(str(clip))
    first = True
    for item in src.batches(16):
        if first and isinstance(item, FrameBatch):  # a write that lands after our end: its time is later
            os.utime(clip, (time.time() + 60, time.time() + 60))
            first = False
    assert src.partial and src.warnings == [
        f"{clip}: the file changed after its end was read (still being written?): 50 frames read, "
        "the rest is not in this result"
    ]


@needs_ffmpeg
@pytest.mark.skipif(open_for_writing(__file__) is None, reason="needs Linux file leases (fcntl F_SETLEASE)")
def test_a_file_a_recorder_still_holds_open_is_not_called_complete(tmp_path, clf):
    # a recorder writes in bursts (ffmpeg's TS muxer: 256 KiB at a time), so the size may not move
    # while we read: what tells is that another process has the file open for writing
    clip = make_clip(tmp_path / "recording.ts", "-c:v", "libx264", "-preset", "ultrafast", frames=50)
    with open(clip, "ab"):
        result = clf.classify(str(clip))
    assert result.partial and result.num_frames == 50
    assert result.warnings == [
        f"{clip}: the file is open for writing by another process (still being written?): 50 frames read, "
        "the rest is not in this result"
    ]
