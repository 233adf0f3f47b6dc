"""Stream sessions: ``POST /v1/streams`` starts one, ``GET /v1/streams/{id}/events`` listens.

Each session runs its own :class:`~fvdeploy.watch.Watcher` over its one source in a thread of
its own, on the process's one loaded model (``Classifier.with_options`` shares it). One watcher
per stream rather than one for all: streams come and go at run time while ``Watcher.run`` takes
its sources when it starts, and ``DELETE`` must wind down exactly one stream (``finish()`` stops
every source of a watcher). The cost is that streams do not share a device step (the stem runs
per stream); on a CPU the cores are shared either way.

Every record the watcher yields (window, event, gap, end: ``fvdeploy watch --json``'s records,
serialized by ``records.to_record``) gets a sequence number and goes to every listener. The last
``history`` records are kept, so a listener that connects late (or reconnects with
``Last-Event-ID``) gets what it missed first. A listener that falls ``listener_queue`` records
behind is disconnected (it may reconnect with ``Last-Event-ID``) rather than holding memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import typing
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import FvdeployError
from ..records import Event, Gap, Record, StreamEnd, WindowResult, dumps
from ..watch import StreamSpec, Watcher, WatchOptions
from .errors import BadRequest

log = logging.getLogger(__name__)

# WatchOptions fields a client may not set: the server decides them (arrays only, one source per
# session, the clip folder is the session's).
SERVER_FIELDS = frozenset({"color", "max_open_files", "clips", "clips_dir"})
CLIP_FIELDS = ("clips", "clips_dir")  # the evidence-clip folder, under whichever name WatchOptions has
CLOSE = object()  # tells a listener's response to end (it fell behind)


def watch_options(data: dict[str, Any]) -> WatchOptions:
    """A :class:`WatchOptions` from JSON fields: its field names (``window_s``), or the CLI's
    names where the field adds ``_s`` (``window`` -> ``window_s``). Types are checked against the
    dataclass (an int where a float is wanted is fine, a bool where a number is wanted is not);
    then ``validate()``. Raises :class:`BadRequest` (one line)."""
    hints = typing.get_type_hints(WatchOptions)
    names = [f.name for f in dataclasses.fields(WatchOptions) if f.name not in SERVER_FIELDS]
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in names else f"{key}_s" if f"{key}_s" in names else None
        if name is None:
            raise BadRequest(f"unknown stream option {key!r}; options: {', '.join(names)}")
        values[name] = _typed(name, value, hints[name])
    options = WatchOptions(**values)
    try:
        options.validate()
    except FvdeployError as e:
        raise BadRequest(str(e)) from None
    return options


def _typed(name: str, value: Any, hint: Any) -> Any:
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, (int, float)) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    wanted = " or ".join("null" if t is type(None) else getattr(t, "__name__", str(t)) for t in allowed)
    raise BadRequest(f"stream option {name} must be {wanted}, got {value!r}")


@dataclass
class StreamStatus(Record):
    """One stream in ``GET /v1/streams``: ``state`` starting | running | stopping | ended |
    failed; counters so far (``frames`` read, ``dropped_frames``, ``windows``, ``events``,
    ``gaps``), ``lag_s`` (the last window's latency), ``label``/``score`` (the last window's),
    ``listeners`` (event streams open), ``error`` (one line) when it failed, ``options`` as
    accepted, ``clips``: the URL of its clip list. Times are Unix seconds."""

    type: ClassVar[str] = "stream"
    id: str
    name: str
    state: str
    options: dict[str, Any]
    frames: int
    dropped_frames: int
    windows: int
    events: int
    gaps: int
    lag_s: float | None
    label: str | None
    score: float | None
    listeners: int
    error: str | None
    created_s: float
    ended_s: float | None
    clips: str


class Listener:
    """One open event stream: records arrive from the session's thread into an asyncio queue on
    the listener's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop, self.limit = loop, limit
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.overflow = False

    def push(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop closed (the server is gone)
            pass

    def _put(self, item: Any) -> None:
        if self.overflow:
            return
        if self.queue.qsize() >= self.limit:
            self.overflow = True
            self.queue.put_nowait(CLOSE)
            return
        self.queue.put_nowait(item)


class StreamSession:
    """One watched source (see the module docstring). ``target``: what the watcher opens (a URL,
    or a real path below an allowed root); ``name``: what its records call it (``stream``)."""

    def __init__(
        self,
        *,
        name: str,
        target: str,
        options: WatchOptions,
        accepted: dict[str, Any],
        classifier: Any,
        clips_dir: Path,
        history: int,
        listener_limit: int,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.name, self.target, self.accepted = name, target, accepted
        self.clips_dir = clips_dir / self.id
        clip_field = next((f.name for f in dataclasses.fields(options) if f.name in CLIP_FIELDS), None)
        if clip_field is not None:  # evidence clips (fvdeploy watch --clips) land in the session's folder
            self.clips_dir.mkdir(parents=True, exist_ok=True)
            options = dataclasses.replace(options)
            setattr(options, clip_field, str(self.clips_dir))
        self.options, self.classifier = options, classifier
        self.state = "starting"
        self.created_s = time.time()
        self.ended_s: float | None = None
        self.windows = self.events = self.gaps = 0
        self.events_by_label: dict[str, int] = {}
        self.lag_s: float | None = None
        self.label: str | None = None
        self.score: float | None = None
        self.error: str | None = None
        self.end: StreamEnd | None = None
        self.watcher: Watcher | None = None
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.seq = 0
        self.history: deque[tuple[int, str]] = deque(maxlen=history)
        self.listener_limit = listener_limit
        self.listeners: list[Listener] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"fvdeploy-stream-{self.id}", daemon=True)

    # -- the thread ---------------------------------------------------------------------------------
    def start(self) -> StreamSession:
        self.thread.start()
        return self

    def _run(self) -> None:
        items = None
        try:
            self.watcher = Watcher(self.classifier, self.options)
            items = self.watcher.run([StreamSpec(self.name, self.target)])
            self.state = "stopping" if self.stopping.is_set() else "running"
            for item in items:
                if self.stopping.is_set():
                    self.watcher.finish()
                self._publish(item)
        except FvdeployError as e:  # the watch could not start (a source the watcher itself reports as an end)
            self._publish(self._end_record(str(e)))
        except Exception as e:  # a bug: logged; the listeners still get an end record, with the error
            log.exception("stream %s (%s) failed", self.id, self.name)
            self._publish(self._end_record(f"internal error {type(e).__name__}: {e}"))
        finally:
            if items is not None:
                items.close()  # type: ignore[attr-defined]  # a generator: stops the readers
            if self.end is None:  # the watcher always ends a stream with an end record; never leave listeners waiting
                self._publish(self._end_record("the stream ended without an end record"))
            self.finished.set()

    def _end_record(self, error: str) -> StreamEnd:
        """The end of a stream the watcher could not end itself, counted as far as it got."""
        c = self.counters()
        return StreamEnd(
            stream=self.name,
            frames=c["frames"],
            windows=self.windows,
            events=self.events,
            dropped_frames=c["dropped_frames"],
            reconnects=0,
            fps=None,
            window_frames=None,
            stride_frames=None,
            time_basis=None,
            error=error,
        )

    def _publish(self, item: Any) -> None:
        if isinstance(item, WindowResult):
            self.windows += 1
            self.lag_s, self.label, self.score = item.latency_s, item.label, item.score
        elif isinstance(item, Event):
            self.events += 1
            self.events_by_label[item.label] = self.events_by_label.get(item.label, 0) + 1
        elif isinstance(item, Gap):
            self.gaps += 1
        elif isinstance(item, StreamEnd):
            self.end = item
            self.error = item.error
            self.state = "failed" if item.error else "ended"
            self.ended_s = time.time()
        line = dumps(item.to_dict())
        with self.lock:
            self.seq += 1
            entry = (self.seq, line)
            self.history.append(entry)
            listeners = list(self.listeners)
        for listener in listeners:
            listener.push(entry)

    # -- control --------------------------------------------------------------------------------------
    def stop(self, timeout_s: float) -> bool:
        """Wind the stream down: its source stops reading, what it delivered is classified, open
        events close and an end record goes to the listeners. Waits up to ``timeout_s`` for the
        end; returns whether it came."""
        self.stopping.set()
        if self.state in ("starting", "running"):
            self.state = "stopping"
        deadline = time.monotonic() + timeout_s
        while not self.finished.is_set():
            if self.watcher is not None:
                self.watcher.finish()  # idempotent; repeated until the watch loop has started
            if self.finished.wait(min(0.1, max(0.0, deadline - time.monotonic()))) or time.monotonic() >= deadline:
                break
        return self.finished.is_set()

    @property
    def ended(self) -> bool:
        return self.finished.is_set()

    # -- listeners ------------------------------------------------------------------------------------
    def subscribe(self, loop: asyncio.AbstractEventLoop, after: int | None) -> tuple[list[tuple[int, str]], Listener]:
        """The kept records after sequence number ``after`` (all kept ones for None), and a
        listener for what comes next (registered atomically with that snapshot: nothing is
        missed or sent twice)."""
        listener = Listener(loop, self.listener_limit)
        with self.lock:
            replay = [e for e in self.history if after is None or e[0] > after]
            self.listeners.append(listener)
        return replay, listener

    def unsubscribe(self, listener: Listener) -> None:
        with self.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)

    # -- reading ----------------------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        """Frames read and dropped so far: the end record's once it came, else the live readers'."""
        if self.end is not None:
            return {"frames": self.end.frames, "dropped_frames": self.end.dropped_frames, "lag_s": self.lag_s}
        now = self.watcher.counters() if self.watcher is not None else []
        frames = sum(c["frames"] for c in now)
        dropped = sum(c["dropped_frames"] for c in now)
        return {"frames": frames, "dropped_frames": dropped, "lag_s": self.lag_s}

    def record(self) -> StreamStatus:
        c = self.counters()
        return StreamStatus(
            id=self.id,
            name=self.name,
            state=self.state,
            options=self.accepted,
            frames=c["frames"],
            dropped_frames=c["dropped_frames"],
            windows=self.windows,
            events=self.events,
            gaps=self.gaps,
            lag_s=self.lag_s,
            label=self.label,
            score=self.score,
            listeners=len(self.listeners),
            error=self.error,
            created_s=round(self.created_s, 3),
            ended_s=None if self.ended_s is None else round(self.ended_s, 3),
            clips=f"/v1/streams/{self.id}/clips",
        )

    def clips(self) -> list[dict[str, Any]]:
        """The clip files in this stream's folder (newest last): name, bytes, Unix mtime, URL, and
        the JSON sidecar's content where one sits beside the clip."""
        import json

        if not self.clips_dir.is_dir():
            return []
        out = []
        for p in sorted(self.clips_dir.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)):
            if p.suffix.lower() not in CLIP_SUFFIXES or not p.is_file():
                continue
            side = p.with_suffix(".json")
            meta = None
            if side.is_file():
                try:
                    meta = json.loads(side.read_text())
                except (OSError, ValueError):
                    meta = None
            st = p.stat()
            out.append(
                {
                    "name": p.name,
                    "bytes": st.st_size,
                    "mtime_s": round(st.st_mtime, 3),
                    "url": f"/v1/streams/{self.id}/clips/{p.name}",
                    "sidecar": meta,
                }
            )
        return out


CLIP_SUFFIXES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska", ".mov": "video/quicktime"}
