"""Classifying on a Ray cluster (fvdeploy.distributed, ``classify --ray``): one local Ray cluster
for the module (2 CPUs, no dashboard), real clips and the tiny model. The results must equal a
local run's, ignoring ``timings`` and ``run``."""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import sys
import tempfile

import pytest
from clips import synthetic_frames, write_clip
from conftest import save_tiny_model
from typer.testing import CliRunner

from fvdeploy.cli import app
from fvdeploy.errors import BackendError
from fvdeploy.runtime import Classifier, VideoResult

runner = CliRunner()
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAVE_RAY, reason="needs the Ray extra: pip install 'fvdeploy[ray]' (make setup installs it)"
)


def comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("timings", "run")}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        write_clip(d / f"v{i}.mp4", synthetic_frames(20 + 7 * i, 32, 40, seed=i))
    (d / "v3_bad.mp4").write_text("broken")
    return d


@pytest.fixture(scope="module")
def local(model_dir, folder):
    """path -> comparable record of a local run over every file in ``folder``."""
    clf = Classifier.load(model_dir, device="cpu")
    paths = sorted(str(p) for p in folder.glob("*.mp4"))
    return {r.path: comparable(r.to_dict()) for r in clf.classify_many(paths)}


@pytest.fixture(scope="module")
def cluster():
    if not HAVE_RAY:
        pytest.skip("needs the Ray extra: pip install 'fvdeploy[ray]' (make setup installs it)")
    import ray

    from fvdeploy import distributed

    distributed.connect("local", num_cpus=2)  # ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
def test_same_rows_as_a_local_run_good_and_bad_inputs(cluster, model_dir, folder, local):
    from fvdeploy import distributed

    missing = str(folder / "absent.mp4")
    uri = (folder / "v1.mp4").as_uri()  # file://...: copied to node-local space through pyarrow.fs
    ds = distributed.classify_dataset(
        [str(folder), uri, missing, str(folder / "nothing*.avi")], model=model_dir, actors=2, batch_size=2
    )
    # the schema is VideoResult's fields, in order (a field added there shows up here)
    assert ds.schema().names == [f.name for f in dataclasses.fields(VideoResult)]
    rows = [r for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None) for r in batch.to_pylist()]
    json.dumps(rows, allow_nan=False)  # strict JSON values
    from fvdeploy.runtime.arrow import row_to_result

    got = {}
    for row in rows:
        assert row["path"] not in got
        got[row["path"]] = comparable(row_to_result(row).to_dict())
    assert set(got) == set(local) | {uri, missing, str(folder / "nothing*.avi")}
    for path, rec in local.items():
        assert got[path] == rec, path
    assert got[uri] == {**local[str(folder / "v1.mp4")], "path": uri}
    assert "no file matches" in got[str(folder / "nothing*.avi")]["error"]
    assert got[missing]["error"] and got[missing]["label"] is None and got[missing]["segments"] == []
    assert sum(r["error"] is not None for r in got.values()) == 3


@needs_ray
def test_a_killed_actor_is_retried_and_every_input_is_there_once(cluster, model_dir, folder, local, monkeypatch):
    from fvdeploy import distributed

    with pytest.raises(BackendError, match="needs a GPU per actor"):  # checked before any actor starts
        distributed.classify_dataset([str(folder)], model=model_dir, device="cuda", num_gpus=0)
    monkeypatch.setenv(distributed.CRASH_ENV, "v2.mp4")
    markers = set(glob.glob(f"{tempfile.gettempdir()}/fvdeploy-crash-*"))
    paths = sorted(local)
    ds = distributed.classify_dataset(
        cluster.data.from_items([{"video": p, "other": 1} for p in paths]),
        path_column="video",
        model=model_dir,
        actors=1,
        batch_size=3,
    )
    results = list(distributed.iter_results(ds, progress=False))
    assert len(set(glob.glob(f"{tempfile.gettempdir()}/fvdeploy-crash-*")) - markers) == 1  # the actor did die
    assert sorted(r.path for r in results) == paths
    assert {r.path: comparable(r.to_dict()) for r in results} == local


@needs_ray
def test_cli_ray_resumes_a_partial_output_like_a_local_run(cluster, model_dir, folder, tmp_path):
    base = ["classify", str(folder), "--model", str(model_dir), "--quiet"]
    local_out = tmp_path / "local.jsonl"
    assert runner.invoke(app, [*base, "--output", str(local_out)]).exit_code == 1  # the broken file
    local_recs = {json.loads(line)["path"]: json.loads(line) for line in local_out.read_text().splitlines()}
    # a partial output: three good records kept (marked, to see that they are not redone), the rest to do
    partial = tmp_path / "partial.jsonl"
    kept = [r for r in local_recs.values() if not r.get("error")][:3]
    partial.write_text("".join(json.dumps({**r, "label": "KEPT"}) + "\n" for r in kept))
    result = runner.invoke(app, [*base, "--output", str(partial), "--resume", "--ray", "auto", "--ray-actors", "2"])
    assert result.exit_code == 1, result.output  # the broken file, as in the local run
    assert result.output.count("error:") == 1 and "v3_bad.mp4" in result.output and "Traceback" not in result.output
    recs = [json.loads(line) for line in partial.read_text().splitlines()]
    assert sorted(r["path"] for r in recs) == sorted(local_recs)  # every input exactly once
    assert sum(r.get("label") == "KEPT" for r in recs) == 3
    assert {r["path"]: comparable(r) for r in recs if r.get("label") != "KEPT"} == {
        p: comparable(r) for p, r in local_recs.items() if p not in {k["path"] for k in kept}
    }


@needs_ray
@pytest.mark.slow
def test_bench_corpus_ray_prints_local_and_ray_figures(cluster, model_dir, folder, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("v0.mp4", "v1.mp4", "v2.mp4"):
        (clips / name).write_bytes((folder / name).read_bytes())
    result = runner.invoke(
        app, ["bench", "corpus", str(clips), "--model", str(model_dir), "--ray", "--ray-address", "auto"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    for run in ("local", "ray_1_actor", "ray_2_actors"):
        assert out[run]["videos_per_s"] > 0 and out[run]["frames_per_s"] > 0
    assert out["videos"] == 3 and out["failed"] == 0 and "ray_overhead_per_video_s" in out


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow: pip install 'fvdeploy[ray]'")
def test_parquet_output_holds_the_jsonl_records_and_resumes(model_dir, folder, tmp_path):
    import pyarrow.parquet as pq

    from fvdeploy.runtime.arrow import RESULT_SCHEMA, ParquetWriter, table_to_results

    base = [
        "classify",
        str(folder / "v0.mp4"),
        str(folder / "v1.mp4"),
        str(folder / "v3_bad.mp4"),
        "--model",
        str(model_dir),
        "--quiet",
    ]
    jsonl, parquet = tmp_path / "r.jsonl", tmp_path / "r.parquet"
    assert runner.invoke(app, [*base, "--output", str(jsonl)]).exit_code == 1
    assert runner.invoke(app, [*base, "--output", str(parquet)]).exit_code == 1
    assert runner.invoke(app, [*base, "--output", str(parquet)]).exit_code == 2  # exists: --force or --resume
    table = pq.read_table(parquet)
    assert table.schema == RESULT_SCHEMA
    recs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [comparable(r.to_dict()) for r in table_to_results(table)] == [
        comparable(VideoResult.from_dict(r).to_dict()) for r in recs
    ]
    # resume: good rows kept as they are (marked here), the failed one tried again
    writer = ParquetWriter(parquet, force=True)
    for r in recs:
        writer.write({**r, "label": "KEPT"} if not r.get("error") else r)
    writer.close()
    assert runner.invoke(app, [*base, "--output", str(parquet), "--resume"]).exit_code == 1
    again = table_to_results(pq.read_table(parquet))
    assert [r.label for r in again] == ["KEPT", "KEPT", None] and again[2].error


def test_without_the_extra_one_line_error_naming_it(monkeypatch, folder, tmp_path):
    from fvdeploy import distributed

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BackendError, match=r"pip install 'fvdeploy\[ray\]'"):
        distributed.classify_dataset([str(folder)])
    result = runner.invoke(app, ["classify", str(folder), "--ray", "auto", "--quiet"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fvdeploy[ray]'" in lines[0], result.output
    # Parquet output needs pyarrow, which comes with the same extra
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.delitem(sys.modules, "fvdeploy.runtime.arrow", raising=False)
    result = runner.invoke(app, ["classify", str(folder), "--output", str(tmp_path / "r.parquet"), "--quiet"])
    assert result.exit_code == 1 and "pip install 'fvdeploy[ray]'" in result.output
    assert not (tmp_path / "r.parquet").exists()


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow: pip install 'fvdeploy[ray]'")
def test_the_row_schema_follows_the_dataclass():
    from fvdeploy.runtime.arrow import _dataclass_codec

    real = {f.name: str(f.type) for f in _dataclass_codec(VideoResult).type}
    assert real["warnings"] == "list<item: string>"  # VideoResult's own, picked up without an edit here

    @dataclasses.dataclass
    class Later(VideoResult):  # a field added to VideoResult later
        notes: list[str] = dataclasses.field(default_factory=list)

    codec = _dataclass_codec(Later)
    assert codec.type[-1].name == "notes" and str(codec.type[-1].type) == "list<item: string>"
    back = codec.decode(codec.encode(Later("a.mp4", fps=float("nan"), warnings=["lost 3 frames at 12.4 s"])))
    assert back.warnings == ["lost 3 frames at 12.4 s"] and back.fps is None  # strict JSON: no NaN
