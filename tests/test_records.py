"""Every published record (classify's VideoResult; watch's window, event, gap and end) against its
JSON Schema in docs/schemas, on real output of `fvdeploy classify --json` and `fvdeploy watch --json`;
and one window of a watch equals classify of the same frames of a real file."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import REPO, run_cli

from fvdeploy.records import RECORD_TYPES, SCHEMA_VERSION, Gap

SCHEMAS = REPO / "docs" / "schemas"
SAMPLES = REPO / "samples"


def schema(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text())


def check(record: dict) -> None:
    """Valid against its type's schema, and every field it carries is documented there."""
    s = schema(record["type"])
    jsonschema.Draft202012Validator(s).validate(record)
    undocumented = set(record) - set(s["properties"])
    assert not undocumented, f"{record['type']} fields missing from docs/schemas: {sorted(undocumented)}"
    assert record["schema_version"] == SCHEMA_VERSION


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_record_type_has_a_valid_schema():
    for kind in RECORD_TYPES:
        jsonschema.Draft202012Validator.check_schema(schema(kind))
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(f"{k}.schema.json" for k in RECORD_TYPES)


def test_classify_json_records_match_the_schema(tmp_path):
    missing = tmp_path / "missing.mp4"
    r = run_cli("classify", SAMPLES / "move_up.mp4", SAMPLES / "move_down.mp4", missing, "--json", "--device", "cpu")
    assert r.returncode == 1  # the missing file fails; the others are classified
    records = lines(r.stdout)
    assert [x["error"] is None for x in records] == [True, True, False]
    for record in records:
        assert record["type"] == "video"
        check(record)
    with pytest.raises(jsonschema.ValidationError):  # the check can fail: a record without its score
        check({k: v for k, v in records[0].items() if k != "score"})


def test_watch_json_records_match_the_schema():
    r = run_cli(
        "watch",
        SAMPLES / "move_right.mp4",
        "--json",
        "--device",
        "cpu",
        "--window-frames",
        16,
        "--stride-frames",
        8,
        "--min-duration",
        0,  # the sample lasts less than the default minimum duration of an event
    )
    assert r.returncode == 0, r.stderr
    records = lines(r.stdout)
    kinds = {x["type"] for x in records}
    assert {"window", "event", "end"} <= kinds, kinds
    for record in records:
        check(record)
    windows = [x for x in records if x["type"] == "window"]
    assert all(w["segments"] and all(s["start_s"] is not None for s in w["segments"]) for w in windows)
    # a gap is made by a live stream that dropped (tests/test_watch_network.py); its serialized form:
    check(Gap("rtsp://cam/1", 3.0, 4.5, 90, 2, "the stream dropped and was reopened").to_dict())


def test_one_window_of_a_watch_equals_classify_on_a_real_file():
    """The acceptance check of the one-engine design: the same label, scores within the fp32
    tolerance, the same cluster boundaries, and segments with the same seconds."""
    from fvdeploy.runtime import Classifier
    from fvdeploy.watch import watch

    clip = SAMPLES / "move_left.mp4"
    clf = Classifier.load(device="cpu", top_k=4)
    ref = clf.classify(clip)
    items = list(watch(clf, clip, window_frames=ref.num_frames, stride_frames=ref.num_frames))
    (win,) = [x for x in items if x.type == "window"]
    assert (win.start_frame, win.end_frame) == (0, ref.num_frames)
    assert win.label == ref.label and abs(win.score - ref.score) < 1e-4
    assert [(s.start_frame, s.end_frame) for s in win.segments] == [(s.start_frame, s.end_frame) for s in ref.segments]
    assert [s.label for s in win.segments] == [s.label for s in ref.segments]
    for a, b in zip(win.segments, ref.segments):
        assert a.start_s == pytest.approx(b.start_s, abs=1e-6) and a.end_s == pytest.approx(b.end_s, abs=1e-6)
        assert abs(a.score - b.score) < 1e-4
    assert [label for label, _ in win.topk] == [label for label, _ in ref.topk]


def test_the_serializer_is_strict_json():
    """NaN and Infinity become null; tuples become lists; in-process fields (logits) stay out."""
    from fvdeploy.records import Segment, VideoResult, WindowResult, dumps

    r = VideoResult(
        path="x.mp4", score=float("nan"), topk=[("a", 0.5)], segments=[Segment(0, 1, 0.0, float("inf"), "a", 1.0)]
    )
    d = r.to_dict()
    assert d["score"] is None and d["segments"][0]["end_s"] is None and d["topk"] == [["a", 0.5]]
    assert json.loads(dumps(d)) == d
    w = WindowResult("s", 0, 0, 8, 0.0, 1.0, "a", 0.9, [("a", 0.9)], False, [], "fps", 0.1, logits=object())
    assert "logits" not in w.to_dict()
    assert list(w.to_dict())[:2] == ["type", "schema_version"]


def test_schemas_are_linked_from_the_design_page():
    assert "(schemas/)" in (REPO / "docs" / "design.md").read_text()
