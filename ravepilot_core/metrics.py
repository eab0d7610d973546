"""Prometheus metrics of the delivery engine, in the text format any scraper reads.

Each :class:`~ravepilot_core.RavePilot` has its own registry (two instances in one process, as in
tests, never clash). Counters and the latency histogram count what this process did; the queue
gauges are read from storage at scrape time, so every process reports the shared queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ravepilot_core.models import DeliveryResult
from ravepilot_core.protocols import Clock, Storage

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The delivery counters, the latency histogram and the queue gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "ravepilot_webhook_attempts",
            "Webhook delivery attempts by outcome (succeeded, retry, failed, held).",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ravepilot_webhook_latency_seconds",
            "Time from sending a webhook request to its response (or failure).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ravepilot_webhook_queue_depth",
            "Deliveries waiting to be sent (pending, including scheduled retries).",
            registry=self.registry,
        )
        self.oldest_pending_age = Gauge(
            "ravepilot_webhook_oldest_pending_age_seconds",
            "Age of the oldest pending delivery; 0 when none is pending.",
            registry=self.registry,
        )
        self._by_outcome = {
            outcome: self.deliveries.labels(outcome)
            for outcome in ("succeeded", "retry", "failed", "held")
        }

    def observe_results(self, results: Sequence[DeliveryResult]) -> None:
        """Count a batch of recorded outcomes and their latencies."""
        for result in results:
            self._by_outcome[result.outcome].inc()
            if result.attempt is not None and result.attempt.latency_ms is not None:
                self.latency.observe(result.attempt.latency_ms / 1000)

    async def render(self, storage: Storage, clock: Clock) -> bytes:
        """Refresh the queue gauges from storage and return the exposition text."""
        stats = await storage.delivery_queue_stats()
        self.queue_depth.set(stats.pending)
        oldest = stats.oldest_pending_at
        age = (clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        self.oldest_pending_age.set(max(age, 0.0))
        return generate_latest(self.registry)
