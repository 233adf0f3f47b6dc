"""The service layer: one loaded model per process, the classify jobs and the stream sessions.
Routes (``serve.app``) only parse, call this and answer; the engine (through
``runtime.Classifier`` and ``watch.Watcher``) is the only place that computes."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import FvdeployError
from ..runtime.options import REQUEST_FIELDS, ClassifyOptions
from .errors import BadRequest, NotFound, TooMany, Unavailable, Unprocessable
from .inputs import VideoInput
from .jobs import Job, JobQueue
from .metrics import Metrics
from .settings import ServeSettings
from .streams import StreamSession, watch_options

log = logging.getLogger(__name__)

STREAM_CLASSIFY_FIELDS = ("clusters", "method", "top_k")  # per stream; watch runs mode full
WATCH_TOP_K = 3  # fvdeploy watch's default --top-k


class Service:
    """``classifier``: a loaded ``runtime.Classifier`` (every request shares its model)."""

    def __init__(self, settings: ServeSettings, classifier: Any) -> None:
        self.settings, self.classifier = settings, classifier
        self.own_work_dir = settings.work_dir is None
        self.work_dir = Path(settings.work_dir or tempfile.mkdtemp(prefix="fvdeploy-serve-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        settings.work_dir = str(self.work_dir)
        self.clips_dir = Path(settings.clips_dir) if settings.clips_dir else self.work_dir / "clips"
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self.jobs = JobQueue(settings.workers, settings.max_jobs, settings.keep_jobs)
        self.streams: OrderedDict[str, StreamSession] = OrderedDict()
        self.lock = threading.Lock()
        self.accepting = True
        self.started_s = time.time()
        self.metrics = Metrics(lambda: list(self.streams.values()), self.jobs.all)

    @classmethod
    def load(cls, settings: ServeSettings) -> Service:
        """Load the model of ``settings.classify`` (``ModelError``/``BackendError`` as
        ``Classifier.load`` raises them) and build the service."""
        from ..runtime import Classifier

        return cls(settings, Classifier.load(options=settings.classify))

    # -- facts ------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        cfg = self.classifier.config
        return {
            "model": self.classifier.model_path,
            "labels": list(cfg.labels),
            "mode": cfg.mode,
            "clusters": cfg.num_clusters,
            "method": cfg.method,
            "run": dict(self.classifier.run_info),
        }

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise Unavailable("the server is shutting down")

    # -- classify ---------------------------------------------------------------------------------
    def classify_options(self, data: dict[str, Any]) -> dict[str, Any]:
        """The per-request options (``ClassifyOptions.REQUEST_FIELDS``) from JSON fields or query
        strings, validated: :class:`BadRequest` for anything else."""
        try:
            return ClassifyOptions.from_mapping(data, allowed=REQUEST_FIELDS).request_options()
        except FvdeployError as e:
            raise BadRequest(str(e)) from None

    def submit(self, video: VideoInput, options: dict[str, Any], *, listed: bool) -> Job:
        """Queue the classification of ``video`` (the upload is deleted when it is done)."""
        try:
            self._check_accepting()
            clf = self.classifier.with_options(**options) if options else self.classifier
        except FvdeployError as e:
            video.discard()
            raise e if isinstance(e, Unavailable) else BadRequest(str(e)) from None

        def work(job: Job) -> dict[str, Any]:
            try:
                result = clf.classify(video.target, progress=job.progress)
            except FvdeployError as e:  # named as the client named it, not as the file the service opened
                raise Unprocessable(str(e).replace(video.target, video.name)) from None
            finally:
                video.discard()
            self.metrics.classified_frames.inc(result.num_frames)
            return renamed(result.to_dict(), video.target, video.name)

        try:
            return self.jobs.submit(video.name, work, listed=listed)
        except Exception:
            video.discard()
            raise

    # -- streams ----------------------------------------------------------------------------------
    def add_stream(self, video: VideoInput, data: dict[str, Any]) -> StreamSession:
        """Start watching ``video`` with the watch options and the per-stream model options
        (``clusters``, ``method``, ``top_k``) in ``data``. :class:`BadRequest` for an option out of
        range, :class:`TooMany` past ``--max-streams``."""
        self._check_accepting()
        model_fields = {k: data[k] for k in STREAM_CLASSIFY_FIELDS if k in data}
        if "mode" in data or "segments" in data:
            raise BadRequest("streams are watched in mode full (windows of G clusters); mode and segments do not apply")
        options = watch_options({k: v for k, v in data.items() if k not in STREAM_CLASSIFY_FIELDS})
        model_fields.setdefault("top_k", WATCH_TOP_K)
        try:
            clf = self.classifier.with_options(mode="full", **model_fields)
        except FvdeployError as e:
            raise BadRequest(str(e)) from None
        session = StreamSession(
            name=video.name,
            target=video.target,
            options=options,
            accepted={**{k: v for k, v in data.items()}, "top_k": model_fields["top_k"]},
            classifier=clf,
            clips_dir=self.clips_dir,
            history=self.settings.history,
            listener_limit=self.settings.listener_queue,
        )
        with self.lock:
            running = sum(1 for s in self.streams.values() if not s.ended)
            if running >= self.settings.max_streams:
                raise TooMany(f"{running} streams are running (--max-streams {self.settings.max_streams})", 30)
            self.streams[session.id] = session
            self._forget_ended()
        return session.start()

    def _forget_ended(self) -> None:
        ended = [s for s in self.streams.values() if s.ended]
        for s in ended[: max(0, len(ended) - self.settings.keep_streams)]:
            self.streams.pop(s.id, None)

    def stream(self, stream_id: str) -> StreamSession:
        session = self.streams.get(stream_id)
        if session is None:
            raise NotFound(f"no stream {stream_id!r} (with Ray, streams live on the replica that started them)")
        return session

    def remove_stream(self, stream_id: str, timeout_s: float = 5.0) -> StreamSession:
        """Stop the stream (its listeners get the end record) and forget it."""
        session = self.stream(stream_id)
        session.stop(timeout_s)
        with self.lock:
            self.streams.pop(stream_id, None)
        return session

    # -- shutdown ---------------------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Stop taking work and wind every stream down (their listeners get end records);
        returns at once (SIGTERM: the server then waits for its connections)."""
        if not self.accepting:
            return
        self.accepting = False
        self.jobs.closing = True
        for s in list(self.streams.values()):
            s.stopping.set()
        threading.Thread(target=self._stop_streams, name="fvdeploy-stop-streams", daemon=True).start()
        threading.Thread(
            target=self.jobs.close, args=(self.settings.shutdown_grace_s,), name="fvdeploy-stop-jobs", daemon=True
        ).start()

    def _stop_streams(self) -> None:
        for s in list(self.streams.values()):
            s.stop(self.settings.shutdown_grace_s)

    def shutdown(self) -> None:
        """``begin_shutdown``, then wait for the streams and jobs (within the grace period) and
        remove the work folder."""
        self.begin_shutdown()
        deadline = time.monotonic() + self.settings.shutdown_grace_s + 5
        for s in list(self.streams.values()):
            s.stop(max(0.1, deadline - time.monotonic()))
        self.jobs.close(max(0.0, deadline - time.monotonic()))
        if self.own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def renamed(record: dict[str, Any], target: str, name: str) -> dict[str, Any]:
    """The record with the file the service opened (an upload's temporary file, a real path)
    called what the client called it, in ``path``, ``warnings`` and ``error``."""
    if target == name:
        return record
    if record.get("path") == target:
        record["path"] = name
    record["warnings"] = [w.replace(target, name) for w in record.get("warnings") or []]
    if isinstance(record.get("error"), str):
        record["error"] = record["error"].replace(target, name)
    return record
