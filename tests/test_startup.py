"""Start-up: --help, --version and every SUB --help run without torch, torchvision or OpenCV
(checked by the benchmark command, which runs each in a fresh interpreter); the closed sets the
command line offers are the library's own."""

from __future__ import annotations

import json

from conftest import run_cli


def test_bench_startup_quick_finds_no_heavy_import_in_any_help():
    r = run_cli("bench", "startup", "--quick")  # the benchmark starts a fresh interpreter per command itself
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"--help", "--version", "classify --help", "export --help", "bench startup --help"} <= set(out["commands"])
    heavy = {cmd: e["heavy_imports"] for cmd, e in out["commands"].items() if e["heavy_imports"]}
    assert heavy == {} and out["ok"] is True
    assert out["help_s"] > 0


def test_lazy_public_names_resolve():
    import fvdeploy
    from fvdeploy import Classifier, VideoResult

    assert fvdeploy.Classifier is Classifier and VideoResult.__name__ == "VideoResult"
    assert "Classifier" in dir(fvdeploy)
    try:
        fvdeploy.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_cli_choices_are_the_library_registries():
    from fvdeploy.backends.base import BACKENDS, PRECISIONS
    from fvdeploy.cli import choices
    from fvdeploy.config import MODES
    from fvdeploy.models import list_models
    from fvdeploy.models.names import ARCHS
    from fvdeploy.ops.clustering import METHODS
    from fvdeploy.runtime.names import DECODERS

    assert sorted(ARCHS) == list_models()
    values = lambda enum: tuple(m.value for m in enum)  # noqa: E731
    assert values(choices.BackendName) == BACKENDS
    assert values(choices.Precision) == tuple(PRECISIONS)
    assert values(choices.Method) == METHODS
    assert values(choices.Decoder) == DECODERS
    assert values(choices.Mode) == MODES
    assert values(choices.Arch) == ARCHS
