"""``fvdeploy bench startup``: how long ``fvdeploy --help``, ``--version`` and every ``fvdeploy SUB
--help`` take, and which heavy modules (torch, torchvision, OpenCV) each one imports (none should).

Each command runs in a fresh interpreter, as a user runs it. Wall time is the best of ``repeats``
runs of ``python -m fvdeploy ARGS``; the imports are read in one more run that lists
``sys.modules`` after the command has finished.
"""

from __future__ import annotations

import subprocess
import sys
import time

HEAVY = ("torch", "torchvision", "cv2", "onnxruntime", "tensorrt")

# Runs the command in-process, then prints the heavy modules it left loaded (stdout: the help).
_PROBE = """
import sys
sys.argv = ["fvdeploy", *sys.argv[1:]]
try:
    from fvdeploy.cli import main
    main()
except SystemExit:
    pass
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
sys.stderr.write("\\nFVDEPLOY-HEAVY " + ",".join(heavy) + "\\n")
"""


def command_lines(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``("--help",)``, ``("--version",)`` and ``(SUB, ..., "--help")`` for every command and group
    of ``group`` (the root click group of the CLI, which passes itself: bench never imports cli)."""
    if not prefix:
        lines: list[tuple[str, ...]] = [("--help",), ("--version",)]
    else:
        lines = [(*prefix, "--help")]
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        if getattr(cmd, "hidden", False):
            continue
        if getattr(cmd, "commands", None):
            lines += command_lines(cmd, (*prefix, name))
        else:
            lines.append((*prefix, name, "--help"))
    return lines


def heavy_imports(args: tuple[str, ...]) -> list[str]:
    """The heavy modules loaded by ``fvdeploy ARGS`` (a fresh interpreter)."""
    r = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True)
    for line in reversed(r.stderr.splitlines()):
        if line.startswith("FVDEPLOY-HEAVY"):
            return [m for m in line.split(" ", 1)[1].split(",") if m] if " " in line else []
    raise RuntimeError(f"fvdeploy {' '.join(args)} did not finish: {r.stderr.strip()[-300:]}")


def wall_seconds(args: tuple[str, ...], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "fvdeploy", *args], capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"fvdeploy {' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    return best


def bench_startup(group, repeats: int = 3, quick: bool = False, log=print) -> dict:
    """``group``: the CLI's root click group. Per command: best wall seconds and the heavy modules it imported; ``ok`` when none did.
    ``quick``: one timed run of ``--help`` only (every command's imports are still checked)."""
    python = _bare_python(repeats)
    commands = {}
    for args in command_lines(group):
        timed = not quick or args == ("--help",)
        entry = {
            "wall_s": round(wall_seconds(args, 1 if quick else repeats), 3) if timed else None,
            "heavy_imports": heavy_imports(args),
        }
        commands[" ".join(args)] = entry
        wall = "" if entry["wall_s"] is None else f"{entry['wall_s']:.3f} s"
        log(f"fvdeploy {' '.join(args):<32} {wall:>9}  heavy imports: {', '.join(entry['heavy_imports']) or 'none'}")
    ok = all(not e["heavy_imports"] for e in commands.values())
    return {
        "python_s": round(python, 3),
        "help_s": commands["--help"]["wall_s"],
        "commands": commands,
        "heavy": list(HEAVY),
        "ok": ok,
    }


def _bare_python(repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        best = min(best, time.perf_counter() - t0)
    return best
