"""VideoResult as Arrow rows (Ray Data, Parquet), derived from the dataclass fields.

The schema is read from ``VideoResult``'s type hints, so a field added there appears here without
an edit: ``str``/``int``/``float``/``bool`` map to Arrow scalars (``X | None`` to a nullable one),
``list[X]`` to a list, a dataclass (``Segment``) to a struct, ``tuple[...]`` to a struct whose
field names come from ``TUPLE_FIELDS`` (``topk``: ``label``, ``score``), ``dict[str, X]`` to a
map. A type none of these cover is stored as a JSON string, so nothing is dropped. Floats that
are not finite become null (output is strict JSON).

Needs pyarrow (``pip install 'fvdeploy[ray]'``); importing this module without it raises
BackendError naming the extra.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import BackendError
from ..records import VideoResult, dumps
from .jsonl import JsonlWriter, OutputExists, iter_records

RAY_EXTRA = "pip install 'fvdeploy[ray]'"

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as e:  # the extra is not installed
    raise BackendError(f"Arrow/Parquet output needs pyarrow ({e.name} is not installed): {RAY_EXTRA}") from None

# Names for the members of tuple-typed fields (a tuple has none of its own).
TUPLE_FIELDS: dict[str, tuple[str, ...]] = {"topk": ("label", "score")}


@dataclass(frozen=True)
class Codec:
    """One field's Arrow type and the conversions between a Python value and an Arrow value."""

    type: pa.DataType
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _same(v: Any) -> Any:
    return v


def _finite(v: Any) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def codec_for(hint: Any, name: str = "") -> Codec:
    """The codec of one type hint (``name``: the field, for ``TUPLE_FIELDS``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return codec_for(rest[0], name)
    elif hint is bool:
        return Codec(pa.bool_(), _same, _same)
    elif hint is int:
        return Codec(pa.int64(), _same, _same)
    elif hint is float:
        return Codec(pa.float64(), _finite, _same)
    elif hint is str:
        return Codec(pa.string(), _same, _same)
    elif hint is Any:  # a readable string for str values (run: backend, device, ...)
        return Codec(pa.string(), lambda v: v if v is None or isinstance(v, str) else json.dumps(v), _same)
    elif dataclasses.is_dataclass(hint):
        return _dataclass_codec(hint)
    elif origin is list and len(args) == 1:
        item = codec_for(args[0], name)
        return Codec(
            pa.list_(item.type),
            lambda v: [item.encode(x) for x in v or ()],
            lambda v: [item.decode(x) for x in v or ()],
        )
    elif origin is tuple and args and Ellipsis not in args:
        names = TUPLE_FIELDS.get(name) or tuple(f"item{i}" for i in range(len(args)))
        parts = [codec_for(a) for a in args]
        return Codec(
            pa.struct([pa.field(n, c.type) for n, c in zip(names, parts)]),
            lambda v: None if v is None else {n: c.encode(x) for n, c, x in zip(names, parts, v)},
            lambda v: None if v is None else tuple(c.decode(v[n]) for n, c in zip(names, parts)),
        )
    elif origin is dict and len(args) == 2 and args[0] is str:
        value = codec_for(args[1])
        # pyarrow gives a map back as a list of (key, value) pairs
        return Codec(
            pa.map_(pa.string(), value.type),
            lambda v: [(k, value.encode(x)) for k, x in (v or {}).items()],
            lambda v: {k: value.decode(x) for k, x in (v.items() if isinstance(v, dict) else v or ())},
        )
    return Codec(
        pa.string(), lambda v: None if v is None else json.dumps(v), lambda v: None if v is None else json.loads(v)
    )


def _dataclass_codec(cls: type) -> Codec:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, codec_for(hints[f.name], f.name)) for f in dataclasses.fields(cls)]

    def encode(obj: Any) -> dict | None:
        if obj is None:
            return None
        get = obj.get if isinstance(obj, dict) else (lambda k: getattr(obj, k))
        return {n: c.encode(get(n)) for n, c in fields}

    def decode(row: dict | None) -> Any:
        if row is None:
            return None
        return cls(**{n: c.decode(row[n]) for n, c in fields if n in row})

    return Codec(pa.struct([pa.field(n, c.type) for n, c in fields]), encode, decode)


RESULT_CODEC = _dataclass_codec(VideoResult)
RESULT_SCHEMA = pa.schema(list(RESULT_CODEC.type))  # one column per VideoResult field


def results_to_table(results: list[VideoResult]) -> pa.Table:
    """Rows with ``RESULT_SCHEMA``, one per result (error results carry every field)."""
    return pa.Table.from_pylist([RESULT_CODEC.encode(r) for r in results], schema=RESULT_SCHEMA)


def row_to_result(row: dict[str, Any]) -> VideoResult:
    """Inverse of ``results_to_table`` for one row (a dict, as ``pa.Table.to_pylist`` gives)."""
    return RESULT_CODEC.decode(row)


def table_to_results(table: pa.Table) -> list[VideoResult]:
    return [row_to_result(r) for r in table.to_pylist()]


class ParquetWriter(JsonlWriter):
    """Parquet output with the JSON Lines writer's guarantees (``runtime/jsonl.py``: the lock, a
    ``FILE.partial`` that keeps finished rows across a SIGKILL, ``--resume``, the atomic finish,
    one-line I/O errors). ``write`` takes the same records as JsonlWriter (``VideoResult.to_dict()``
    or an error record) or a VideoResult.

    ``FILE.partial`` is a JSON Lines *spool*, one flushed line per result, and ``close()`` writes
    FILE from it in row groups of ``group_rows`` (a temporary file synced, then renamed over FILE).
    Why a spool rather than flushed row groups or a dataset folder: a Parquet file is readable only
    once its footer is written, so after a SIGKILL the row groups of an unfinished file cannot be
    read back by pyarrow; and a folder of small files, one written per row group, loses every row
    of the group in progress, or with one file per row costs a file per video. A spool line is on
    disk the moment its video is done, is read back with the JSON Lines code, and costs one
    conversion at the end (in ``group_rows`` batches, so memory stays bounded). Resume reads FILE
    (Parquet) and the spool, and keeps each input's successful record once."""

    def __init__(self, path: str | Path, *, force: bool = False, resume: bool = False, group_rows: int = 256) -> None:
        self.group_rows = group_rows
        super().__init__(path, force=force, resume=resume)

    def _finished_records(self) -> Iterable[tuple[str, dict]]:
        if not self.path.exists():
            return []
        try:
            table = pq.read_table(self.path)
        except (pa.ArrowInvalid, OSError) as e:
            raise OutputExists(f"{self.path}: cannot read it as Parquet ({e}); --force starts over") from None
        records = (row_to_result(r).to_dict() for r in table.to_pylist())
        return [(dumps(rec), rec) for rec in records]

    def write(self, record: dict[str, Any] | VideoResult) -> None:
        super().write(record.to_dict() if isinstance(record, VideoResult) else record)

    def _finish(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with pq.ParquetWriter(tmp, RESULT_SCHEMA) as writer:
                rows: list[VideoResult] = []
                for _, record in iter_records(self.partial):
                    rows.append(VideoResult.from_dict(record))
                    if len(rows) >= self.group_rows:
                        writer.write_table(results_to_table(rows))
                        rows = []
                if rows:
                    writer.write_table(results_to_table(rows))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.partial.unlink(missing_ok=True)
