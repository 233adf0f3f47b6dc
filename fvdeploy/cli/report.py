"""How ``classify`` reports each input, locally or from Ray actors (``classify_ray``): one place."""

from __future__ import annotations

import typer

from .app import print_error


def partial_line(result) -> str:
    """The one stderr line of a partial result: its path and its first warning when it has one."""
    warnings = result.warnings or [f"{result.path}: frames were lost while decoding"]
    more = f" (+{len(warnings) - 1} more warnings in the result)" if len(warnings) > 1 else ""
    return f"partial result, {warnings[0]}{more}"


def emit(path: str, result, error: str | None, writer, as_json: bool, rows: list) -> int:
    """Report one input, local or from Ray: an error line or a partial-result line on stderr, the
    record (an error record carries the whole schema, with nulls) to the output and/or stdout.
    Returns 1 if it failed, else 0."""
    from ..io.urls import redact, redact_text
    from ..records import VideoResult, dumps

    if error is not None:
        error = redact_text(error)  # a URL's password never reaches a line or a record
        print_error(error)
        record = (result or VideoResult.failed(redact(path), error)).to_dict()
        record["error"] = error
        if record.get("path"):
            record["path"] = redact(record["path"])
    else:
        record = result.to_dict()
        rows.append(result)
        if result.partial:
            print_error(partial_line(result), "warning", "yellow")
    if writer is not None:
        writer.write(record)
    if as_json:
        typer.echo(dumps(record))
    return int(error is not None)
