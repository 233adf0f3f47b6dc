"""``--output FILE`` for ``classify``: one set of guarantees whatever the format (JSON Lines, or
Parquet for a ``.parquet`` FILE; see ``runtime/jsonl.py``), and the CLI's way of saying what went
wrong: an existing FILE is a usage error (exit 2); a FILE another run writes, or one that cannot
be written (disk full, permission denied), is one ``error:`` line and exit 1 (``guarded``); a
lock left by a killed run is taken over with a ``note:`` line."""

from __future__ import annotations

from pathlib import Path

from .app import print_error, usage_error


def open_output(output: Path | None, *, force: bool, resume: bool):
    """The writer of ``output`` (None without one). Raises ``typer.Exit(2)`` when FILE exists
    (or holds an interrupted run) without ``--force``/``--resume``, ``OutputLocked`` or
    ``OutputError`` (FvdeployError: exit 1) otherwise."""
    if output is None:
        return None
    from ..runtime.jsonl import JsonlWriter, OutputExists

    try:
        if output.suffix.lower() == ".parquet":
            from ..runtime.arrow import ParquetWriter

            writer = ParquetWriter(output, force=force, resume=resume)
        else:
            writer = JsonlWriter(output, force=force, resume=resume)
    except OutputExists as e:
        raise usage_error(str(e)) from None
    for note in writer.notes:
        print_error(note, "note", "cyan")
    return writer


def still_to_do(inputs: list, writer) -> list:
    """The inputs ``--resume`` has no successful record of (records name a URL without its
    password, so inputs are compared the same way)."""
    if writer is None or not writer.done:
        return inputs
    from ..io.urls import redact

    return [i for i in inputs if redact(i.path) not in writer.done]
