"""Prometheus metrics of one service process (docs/serve.md, Metrics), in a registry of its own
(several apps in one process, as in the tests, do not share counters).

Request metrics are counted by ``serve.app``'s middleware. Stream metrics are read live from the
stream sessions when Prometheus scrapes (a custom collector), so a counter is never behind the
session it describes: ``fvdeploy_frames_total`` and ``fvdeploy_dropped_frames_total`` (frames a
stream read, and live frames dropped before the model because it fell behind),
``fvdeploy_stream_lag_seconds`` (arrival of a window's last frame -> its result, the last
window's), ``fvdeploy_events_total`` (by stream and label)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Latency buckets from 5 ms (healthz) to 5 min (a long upload classified in one request).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The registry and the metrics the service updates itself."""

    def __init__(self, sessions: Callable[[], Iterable[Any]], jobs: Callable[[], Iterable[Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fvdeploy_requests",
            "HTTP requests answered, by status and route.",
            ["status", "route"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fvdeploy_request_duration_seconds",
            "Time to answer a request (an event stream: its whole life).",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.classified_frames = Counter(
            "fvdeploy_classify_frames", "Frames classified by /v1/classify and /v1/jobs.", registry=self.registry
        )
        self.registry.register(_Live(sessions, jobs))


class _Live(Collector):
    def __init__(self, sessions: Callable[[], Iterable[Any]], jobs: Callable[[], Iterable[Any]]) -> None:
        self.sessions, self.jobs = sessions, jobs

    def describe(self) -> list:
        return []  # read at scrape time only

    def collect(self) -> Iterator[Any]:
        frames = CounterMetricFamily("fvdeploy_frames", "Frames read from a stream's source.", labels=["stream"])
        dropped = CounterMetricFamily(
            "fvdeploy_dropped_frames",
            "Live frames dropped before the model because it fell behind.",
            labels=["stream"],
        )
        lag = GaugeMetricFamily(
            "fvdeploy_stream_lag_seconds",
            "Arrival of the last window's last frame -> that window's result.",
            labels=["stream"],
        )
        events = CounterMetricFamily("fvdeploy_events", "Events a stream reported.", labels=["stream", "label"])
        states: dict[str, int] = {}
        for s in list(self.sessions()):
            c = s.counters()
            frames.add_metric([s.id], c["frames"])
            dropped.add_metric([s.id], c["dropped_frames"])
            if c["lag_s"] is not None:
                lag.add_metric([s.id], c["lag_s"])
            for label, n in sorted(s.events_by_label.items()):
                events.add_metric([s.id, label], n)
            states[s.state] = states.get(s.state, 0) + 1
        streams = GaugeMetricFamily("fvdeploy_streams", "Stream sessions by state.", labels=["state"])
        for state, n in sorted(states.items()):
            streams.add_metric([state], n)
        by_status: dict[str, int] = {}
        for j in list(self.jobs()):
            by_status[j.status] = by_status.get(j.status, 0) + 1
        jobs = GaugeMetricFamily("fvdeploy_jobs", "Classify requests and jobs by status.", labels=["status"])
        for status, n in sorted(by_status.items()):
            jobs.add_metric([status], n)
        yield from (frames, dropped, lag, events, streams, jobs)
