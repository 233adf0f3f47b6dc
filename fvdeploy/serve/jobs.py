"""Classify work off the event loop: every ``POST /v1/classify`` and ``POST /v1/jobs`` becomes a
:class:`Job` run by a small pool of worker threads, so ``/healthz`` and event streams answer
while the model works. At most ``max_jobs`` are queued or running at once (then 429 with a
``Retry-After`` estimated from recent durations); finished jobs stay readable (the last
``keep``); a job is cancelled between two decoded chunks (its progress callback raises)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import FvdeployError
from ..records import Record
from .errors import ApiError, NotFound, TooMany, Unavailable, Unprocessable, one_line

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed")


class JobCancelled(Exception):
    """Raised inside a job's progress callback to stop its classification (not an
    FvdeployError, so nothing on the way turns it into a result)."""


@dataclass
class JobStatus(Record):
    """``GET /v1/jobs/{id}``: ``status`` queued | running | done | failed, frames decoded so far
    and the container's announced count (null when unknown), ``result`` (the
    ``classify --json`` record) when done, ``error`` (one line) when failed. Times are Unix seconds."""

    type: ClassVar[str] = "job"
    id: str
    status: str
    name: str
    frames_done: int
    frames_total: int | None
    result: dict[str, Any] | None
    error: str | None
    created_s: float
    started_s: float | None
    finished_s: float | None


class Job:
    """One classification: ``work(job)`` returns the result record; it calls
    :meth:`progress` (which raises :class:`JobCancelled` once :meth:`cancel` was called)."""

    def __init__(self, name: str, work: Callable[["Job"], dict[str, Any]], listed: bool) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.name, self.work, self.listed = name, work, listed
        self.status = "queued"
        self.frames_done = 0
        self.frames_total: int | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.error_status = 422  # the HTTP status a synchronous request answers a failure with
        self.created_s = time.time()
        self.started_s: float | None = None
        self.finished_s: float | None = None
        self.cancelled = threading.Event()
        self.cancel_reason = "cancelled"
        self.done = threading.Event()
        self.future: Future | None = None

    def progress(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise JobCancelled()
        self.frames_done = done
        self.frames_total = total or None

    def cancel(self, why: str) -> None:
        if self.done.is_set():
            return
        self.cancel_reason = why
        self.error_status = Unavailable.status  # a synchronous request whose job was cancelled: 503
        self.cancelled.set()
        if self.future is not None and self.future.cancel():  # never started
            self._finish("failed", error=why)

    def record(self) -> JobStatus:
        return JobStatus(
            id=self.id,
            status=self.status,
            name=self.name,
            frames_done=self.frames_done,
            frames_total=self.frames_total,
            result=self.result,
            error=self.error,
            created_s=round(self.created_s, 3),
            started_s=None if self.started_s is None else round(self.started_s, 3),
            finished_s=None if self.finished_s is None else round(self.finished_s, 3),
        )

    def _finish(self, status: str, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.status, self.result, self.error = status, result, error
        self.finished_s = time.time()
        self.done.set()

    def run(self) -> None:
        if self.cancelled.is_set():
            self._finish("failed", error=self.cancel_reason)
            return
        self.status, self.started_s = "running", time.time()
        try:
            result = self.work(self)
        except Exception as e:
            if self.cancelled.is_set():  # whatever stopped it after a cancel, it was cancelled
                self._finish("failed", error=self.cancel_reason)
            else:
                self._failed(e)
        else:
            self._finish("done", result=result)

    def _failed(self, e: Exception) -> None:
        try:
            raise e
        except ApiError as e:
            self.error_status = e.status
            self._finish("failed", error=str(e))
        except FvdeployError as e:  # a video that cannot be read or classified
            self.error_status = Unprocessable.status
            self._finish("failed", error=one_line(e))
        except Exception as e:  # a bug: logged with its traceback, answered as a 500
            log.exception("job %s (%s) failed", self.id, self.name)
            self.error_status = 500
            self._finish("failed", error=one_line(f"internal error {type(e).__name__}: {e}"))


class JobQueue:
    """``workers`` threads run the jobs in order; ``max_active`` bounds queued + running."""

    def __init__(self, workers: int, max_active: int, keep: int) -> None:
        self.workers, self.max_active, self.keep = workers, max_active, keep
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fvdeploy-classify")
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.closing = False
        self.mean_s = 5.0  # running mean of job durations, for Retry-After

    def active(self) -> list[Job]:
        with self.lock:
            return [j for j in self.jobs.values() if not j.done.is_set()]

    def all(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    def submit(self, name: str, work: Callable[[Job], dict[str, Any]], *, listed: bool) -> Job:
        """Queue a job; :class:`TooMany` past ``max_active``, :class:`Unavailable` while closing."""
        job = Job(name, work, listed)
        with self.lock:
            if self.closing:
                raise Unavailable("the server is shutting down")
            active = sum(1 for j in self.jobs.values() if not j.done.is_set())
            if active >= self.max_active:
                wait = self.mean_s * (active - self.workers + 1) / self.workers
                raise TooMany(f"{active} classifications are queued or running (--max-jobs {self.max_active})", wait)
            self.jobs[job.id] = job
            self._forget_old()
        job.future = self.pool.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        t0 = time.perf_counter()
        job.run()
        self.mean_s = 0.8 * self.mean_s + 0.2 * (time.perf_counter() - t0)

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond ``keep`` (and finished unlisted ones: their
        request has its answer)."""
        done = [j for j in self.jobs.values() if j.done.is_set()]
        for j in done:
            if not j.listed:
                self.jobs.pop(j.id, None)
        done = [j for j in done if j.listed]
        for j in done[: max(0, len(done) - self.keep)]:
            self.jobs.pop(j.id, None)

    def forget(self, job: Job) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)

    def get(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None or not job.listed:
            raise NotFound(f"no job {job_id!r} (finished jobs are kept for a while; with Ray, on one replica)")
        return job

    def close(self, grace_s: float) -> None:
        """Refuse new jobs; let queued and running ones finish for ``grace_s`` seconds, then
        cancel the rest; wait for the workers."""
        with self.lock:
            self.closing = True
        deadline = time.monotonic() + grace_s
        for job in self.active():
            job.done.wait(max(0.0, deadline - time.monotonic()))
        left = self.active()
        for job in left:
            job.cancel("cancelled: the server is shutting down")
        for job in left:
            job.done.wait(30)
            log.warning("job %s (%s) %s at shutdown", job.id, job.name, job.status)
        self.pool.shutdown(wait=True, cancel_futures=True)
