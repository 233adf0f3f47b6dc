"""Markers, capability skips and shared fixtures.

``slow``: deselected by default (``pytest -m slow`` runs them). ``gpu``: needs CUDA. ``tensorrt``:
needs the tensorrt package and CUDA. Missing capabilities skip with a reason, unless
``FVDEPLOY_REQUIRE=gpu,tensorrt`` names them: then the test fails instead (use it on GPU machines,
so a broken CUDA install cannot pass as a skip).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import traceback
from pathlib import Path

# as fvdeploy/__init__.py does, before torch loads here: OpenMP threads sleep at barriers, not spin
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REQUIRED = {s.strip() for s in os.environ.get("FVDEPLOY_REQUIRE", "").split(",") if s.strip()}
KNOWN_REQUIREMENTS = {"gpu", "tensorrt"}


def pytest_configure(config):
    unknown = REQUIRED - KNOWN_REQUIREMENTS
    if unknown:
        raise pytest.UsageError(f"FVDEPLOY_REQUIRE names unknown capability {sorted(unknown)}; known: gpu, tensorrt")


def _missing(marker: str) -> str | None:
    if marker == "gpu" and not torch.cuda.is_available():
        return "needs a CUDA device (torch.cuda.is_available() is False)"
    if marker == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "needs the tensorrt package (pip install 'fvdeploy[trt]'), not installable in this workplace"
        if not torch.cuda.is_available():
            return "needs a CUDA device for TensorRT"
    return None


def pytest_runtest_setup(item):
    for marker in ("gpu", "tensorrt"):
        if marker in item.keywords:
            reason = _missing(marker)
            if reason is None:
                continue
            if marker in REQUIRED:
                pytest.fail(f"FVDEPLOY_REQUIRE={marker} but {reason}", pytrace=False)
            pytest.skip(reason)


ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # for subprocesses of the training tests


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy shared CPU two threads spin
    against each other (a training step took 7x longer here): the training tests run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread_here():
    """``one_thread`` for one test: the narrow stand-ins of real-size models run many small
    convolutions, which two spinning threads turned from 0.2 s into 10 s on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def bigbuckbunny() -> Path:
    # ../shared does not travel to a lent GPU machine; scripts/make-gpu-carry.sh copies the clip into .carry/
    path = next(
        (p for p in (SHARED_DATA / "bigbuckbunny.mp4", REPO / ".carry" / "data" / "bigbuckbunny.mp4") if p.is_file()),
        SHARED_DATA / "bigbuckbunny.mp4",
    )
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data folder beside the repo)")
    return path


def tiny_config(**overrides):
    from fvdeploy.config import InputSpec, ModelConfig

    base = dict(
        arch="tiny",
        num_classes=3,
        labels=["a", "b", "c"],
        num_clusters=4,
        method="cumulative",
        input=InputSpec(shorter_side=32, crop=32),
    )
    base.update(overrides)
    return ModelConfig(**base)


def save_tiny_model(folder: Path, seed: int, **overrides) -> Path:
    """A freshly initialised model (``tiny_config(**overrides)``, weights from ``seed``) saved as a
    model folder: the fixture behind most tests' ``model_dir``."""
    from fvdeploy.bundle import save_model
    from fvdeploy.models import create_model

    torch.manual_seed(seed)
    save_model(create_model(tiny_config(**overrides)).eval(), folder)
    return folder


def run_cli(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``fvdeploy ARGS`` in this process (Typer's CliRunner), returned as a real run would be:
    ``returncode``, ``stdout``, ``stderr``. An exception that escapes the command's own handling
    is printed on stderr as the traceback a real process would show, so that "no traceback"
    assertions keep their meaning. A real subprocess is kept only where the process is the point
    (signals, Ctrl-C, a terminal, locks between processes, file permissions) and for one smoke
    test per command family."""
    from typer.testing import CliRunner

    from fvdeploy.cli import app

    argv = [str(a) for a in args]
    r = CliRunner().invoke(app, argv, env=env)
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(r.exception))
    return subprocess.CompletedProcess(["fvdeploy", *argv], r.exit_code, r.stdout, stderr)


@pytest.fixture
def terminal_stderr(monkeypatch):
    """The CLI's stderr console behaves as on a terminal inside CliRunner, so its progress displays
    draw: rich reads TTY_COMPATIBLE, TERM and COLUMNS when asked, but decides ``is_interactive``
    (whether a live display redraws) once, when ``fvdeploy.cli`` is imported."""
    from fvdeploy.cli import err

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(err, "is_interactive", True)
    return err


@pytest.fixture
def tiny_model():
    from fvdeploy.models import create_model

    return create_model(tiny_config()).eval()
