"""Prometheus metrics: the API's HTTP metrics, the worker's counters, the job gauges.

Metrics live in prometheus_client's default registry, made once per process on first use
(`http_metrics()`, `worker_metrics()`), so an API process shows no worker families and the
other way round. The job gauges are not kept in the process at all: `JobGaugesCollector`
reads them from the database at each scrape (`refresh()`, then `collect()`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("app.observability.metrics")

PREFIX = "dataloader"
# Seconds; jobs run from milliseconds (noop) to an hour (ETL loads).
JOB_DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
)
HTTP_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ATTEMPT_OUTCOMES = ("succeeded", "failed", "canceled", "retried", "interrupted", "fenced")
REAPER_ACTIONS = ("requeued", "lost", "redispatched")
# FireKind values, plus `error` for a fire that raised and was rolled back.
SCHEDULE_FIRE_OUTCOMES = (
    "fired",
    "baselined",
    "disabled",
    "skipped_instance",
    "not_due",
    "error",
)
LIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("succeeded", "failed", "canceled", "lost")

# `_created` series double the output and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class HttpMetrics:
    """Requests the API answered, by method, route template and status."""

    requests: Counter
    duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> HttpMetrics:
        """Register the HTTP families in `registry`."""
        return cls(
            requests=Counter(
                f"{PREFIX}_http_requests",
                "HTTP requests answered, by method, route template and status code.",
                ["method", "route", "status"],
                registry=registry,
            ),
            duration=Histogram(
                f"{PREFIX}_http_request_duration_seconds",
                "Time to answer an HTTP request (to the end of its body), by method and route.",
                ["method", "route"],
                buckets=HTTP_DURATION_BUCKETS,
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class WorkerMetrics:
    """What a worker process did: attempts, their outcomes and durations, maintenance."""

    attempts_started: Counter
    attempts_finished: Counter
    job_duration: Histogram
    lock_busy: Counter
    rate_limited: Counter
    reaper_actions: Counter
    schedule_fires: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> WorkerMetrics:
        """Register the worker families in `registry`, label sets known up front at zero."""
        metrics = cls(
            attempts_started=Counter(
                f"{PREFIX}_attempts_started",
                "Attempts this worker started, by queue and task.",
                ["queue", "task"],
                registry=registry,
            ),
            attempts_finished=Counter(
                f"{PREFIX}_attempts_finished",
                "Attempts this worker ended, by queue, task and outcome (succeeded, failed,"
                " canceled, retried: failed and scheduled again, interrupted: stopped by a"
                " shutdown and given back, fenced: another attempt owned the job).",
                ["queue", "task", "outcome"],
                registry=registry,
            ),
            job_duration=Histogram(
                f"{PREFIX}_job_duration_seconds",
                "Run time of each attempt, from its start to its end, by queue and task.",
                ["queue", "task"],
                buckets=JOB_DURATION_BUCKETS,
                registry=registry,
            ),
            lock_busy=Counter(
                f"{PREFIX}_lock_busy",
                "Starts postponed because another job held the lock_key.",
                registry=registry,
            ),
            rate_limited=Counter(
                f"{PREFIX}_rate_limited",
                "Starts postponed by a rate limit, by queue and limit (queue: the queue's"
                " start rate; rate_key: its per-rate_key rate).",
                ["queue", "limit"],
                registry=registry,
            ),
            reaper_actions=Counter(
                f"{PREFIX}_reaper_actions",
                "What the reaper did while this worker led maintenance: requeued (lease"
                " expired), lost (lease expired on the last attempt), redispatched.",
                ["action"],
                registry=registry,
            ),
            schedule_fires=Counter(
                f"{PREFIX}_schedule_fires",
                "Due schedules this worker handled while leading, by outcome.",
                ["outcome"],
                registry=registry,
            ),
        )
        for action in REAPER_ACTIONS:
            metrics.reaper_actions.labels(action)
        for outcome in SCHEDULE_FIRE_OUTCOMES:
            metrics.schedule_fires.labels(outcome)
        return metrics


@functools.cache
def http_metrics() -> HttpMetrics:
    """The API process's HTTP metrics (registered on first use)."""
    return HttpMetrics.create()


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """The worker process's metrics (registered on first use)."""
    return WorkerMetrics.create()


@dataclass(frozen=True)
class QueueStatusCount:
    """How many jobs of one queue have one status."""

    queue: str
    status: str
    count: int


@dataclass(frozen=True)
class JobGauges:
    """The database's job counts at one moment."""

    live: list[QueueStatusCount] = field(default_factory=list)  # queued and running now
    finished_last_hour: list[QueueStatusCount] = field(default_factory=list)
    # Per queue: seconds since the oldest queued job became runnable (its available_at).
    oldest_queued_age_sec: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobGaugesCollector(Collector):
    """The job gauges of one scrape (None: the database did not answer in time)."""

    gauges: JobGauges | None
    read_sec: float = 0.0

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families depend on what the database holds."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The gauges read for this scrape."""
        gauges = self.gauges
        yield GaugeMetricFamily(
            f"{PREFIX}_database_up",
            "1 when the job gauges could be read from the database at this scrape, else 0.",
            value=0 if gauges is None else 1,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_job_gauges_read_seconds",
            "Time the job gauges query took at this scrape.",
            value=self.read_sec,
        )
        if gauges is None:
            return
        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs",
            "Jobs queued or running now, by queue and status.",
            labels=["queue", "status"],
        )
        live = {(row.queue, row.status): row.count for row in gauges.live}
        queues = sorted({row.queue for row in (*gauges.live, *gauges.finished_last_hour)})
        for queue in queues:
            for status in LIVE_STATUSES:
                jobs.add_metric([queue, status], live.get((queue, status), 0))
        yield jobs
        finished = GaugeMetricFamily(
            f"{PREFIX}_jobs_finished_last_hour",
            "Jobs that reached a final status in the last hour, by queue and status.",
            labels=["queue", "status"],
        )
        done = {(row.queue, row.status): row.count for row in gauges.finished_last_hour}
        for queue in queues:
            for status in FINISHED_STATUSES:
                finished.add_metric([queue, status], done.get((queue, status), 0))
        yield finished
        age = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_queued_age_seconds",
            "Seconds the oldest runnable queued job of each queue has waited (0: none).",
            labels=["queue"],
        )
        for queue in queues:
            age.add_metric([queue], gauges.oldest_queued_age_sec.get(queue, 0.0))
        yield age


@dataclass(frozen=True)
class JobGaugesReader:
    """Reads the job gauges at each scrape, within a short timeout."""

    read: Callable[[], Awaitable[JobGauges]]
    timeout_sec: float = 2.0

    async def scrape(self) -> JobGaugesCollector:
        """This scrape's gauges; a database that fails or is slow gives database_up 0."""
        started = time.perf_counter()
        try:
            gauges: JobGauges | None = await asyncio.wait_for(self.read(), self.timeout_sec)
        except Exception as exc:  # a scrape must answer whatever the database does
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            logger.warning("metrics: could not read the job gauges: %s", reason)
            gauges = None
        return JobGaugesCollector(gauges, time.perf_counter() - started)


@dataclass(frozen=True)
class _Combined(Collector):
    """The process's own registry and the per-scrape collectors, as one collect()."""

    parts: tuple[Collector, ...]

    def collect(self) -> Iterator[Metric]:
        """Every part's metrics, in order."""
        for part in self.parts:
            yield from part.collect()


def render(*collectors: Collector, registry: Collector = REGISTRY) -> bytes:
    """The Prometheus text format of `registry` (process, HTTP...) and `collectors`."""
    return generate_latest(_Combined((registry, *collectors)))


# The classic text format every Prometheus version reads (what generate_latest writes).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def start_metrics_server(host: str, port: int) -> WSGIServer | None:
    """Serve this process's metrics on http://host:port/metrics in a thread; None if off.

    A port already taken (two workers on one host with one WORKER_METRICS_PORT) is logged
    and the process goes on without its endpoint: metrics are not worth refusing to work.
    """
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        logger.warning(
            "metrics endpoint not started: cannot listen on %s:%d (%s); set"
            " WORKER_METRICS_PORT to a free port for each worker on this host",
            host,
            port,
            exc.strerror or exc,
        )
        return None
    logger.info("metrics on http://%s:%d/metrics", host, port)
    return server
