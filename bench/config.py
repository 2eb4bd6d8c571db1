"""Sizes and knobs of one benchmark run: the full defaults, or tiny ones with --quick."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ALL_SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


@dataclass
class BenchConfig:
    """Everything a scenario needs to know about how big and how parallel to run."""

    quick: bool = False
    reps: int = 3
    only: tuple[int, ...] = ALL_SCENARIOS
    out: Path = field(default_factory=lambda: Path("bench-results/latest.json"))
    keep_logs: bool = False
    # Workers (scenarios 1, 2, 4, 5, 6).
    workers: int = 2
    # Fleet-wide, for the peer and our workers alike; 0 is no limit (a plain QueueManager).
    concurrency: int = 0
    batch_size: int = 10
    # Scenarios 1 and 2.
    jobs: int = 20_000
    enqueue_batch: int = 1_000
    # Scenario 3.
    api_workers: int = 2
    http_requests: int = 20_000
    http_concurrency: int = 32
    http_warmup: int = 500
    bulk_jobs: int = 20_000
    bulk_tx_size: int = 1_000
    http_bulk_size: int = 500
    http_bulk_concurrency: int = 4
    # Scenario 4.
    latency_jobs: int = 500
    latency_warmup: int = 5
    # Scenario 5.
    scale_jobs: int = 10_000
    scale_lookups: int = 2_000
    history_jobs: int = 1_000_000
    # Scenario 6. Bounded: an unlimited worker pulls the whole backlog into memory at once,
    # and the figure would measure the backlog instead of what 100,000 jobs leave behind.
    memory_concurrency: int = 200
    memory_warmup: int = 1_000
    memory_jobs: int = 100_000
    memory_batch: int = 1_000
    # Scenario 9: tenant A's backlog that tenant B's jobs arrive behind.
    fairness_backlog: int = 100_000
    # Scenario 10: steps of the fan-out/fan-in workflow (and plain jobs to compare with).
    workflow_steps: int = 1_000

    @classmethod
    def quick_sizes(cls) -> BenchConfig:
        """A smoke run: every scenario end to end in well under a minute."""
        return cls(
            quick=True,
            reps=1,
            jobs=300,
            enqueue_batch=100,
            http_requests=300,
            http_concurrency=8,
            http_warmup=20,
            bulk_jobs=1_000,
            bulk_tx_size=500,
            http_bulk_size=250,
            latency_jobs=30,
            latency_warmup=1,
            scale_jobs=300,
            scale_lookups=200,
            history_jobs=3_000,
            memory_warmup=100,
            memory_jobs=500,
            memory_batch=100,
            fairness_backlog=2_000,
            workflow_steps=100,
        )

    def worker_settings(self, jobs: int) -> dict[str, object]:
        """How a drain scenario's workers run, for its settings line."""
        return {
            "worker processes": self.workers,
            "concurrency": self.concurrency_label(),
            "batch size": self.batch_size,
            "N": jobs,
        }

    def concurrency_label(self) -> str:
        """How the fleet-wide limit reads in the settings."""
        return "unlimited" if self.concurrency == 0 else str(self.concurrency)

    def http_bulk_requests(self) -> int:
        """How many bulk requests carry `bulk_jobs` jobs."""
        return max(1, -(-self.bulk_jobs // self.http_bulk_size))
