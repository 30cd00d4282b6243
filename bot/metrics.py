"""Prometheus metrics for GET /metrics, in their own registry (nothing global, nothing at import).

Counters and histograms are fed as things happen (requests, ticks, sends); the state of the
database (open disputes by stage, outbox depth and age) is read when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.clock import Clock
from bot.outbox import DispatchReport
from bot.service import TickReport
from store.repository import Store

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)

# Timer events, as the nudges they are.
NUDGES = {
    "ReminderSent": "reminder",
    "StepDueToday": "due_today",
    "DeadlineBreached": "breach",
    "StageEscalated": "escalation",
    "OverallTargetBreached": "overall_target",
    "ActionReviewDue": "check_back",
}


class StoreCollector(Collector):
    """Database state, read at scrape time."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Open disputes by stage, the outbox's depth and its oldest unsent message's age."""
        with self.store.reading() as session:
            by_stage = self.store.open_by_stage(session)
            counts = self.store.outbox_counts(session)
            oldest = self.store.oldest_unsent(session)
        disputes = GaugeMetricFamily(
            "escalation_disputes_open", "Open disputes, by stage.", labels=["stage"]
        )
        for stage, count in sorted(by_stage.items()):
            disputes.add_metric([str(stage)], count)
        yield disputes
        depth = GaugeMetricFamily(
            "escalation_outbox_messages", "Outbox messages, by state.", labels=["state"]
        )
        for state in ("pending", "sending", "parked", "sent"):
            depth.add_metric([state], counts.get(state, 0))
        yield depth
        age = (self.clock.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "escalation_outbox_oldest_unsent_seconds",
            "Age of the oldest message still waiting to be sent.",
            value=max(age, 0.0),
        )


class Metrics:
    """Everything /metrics reports."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "escalation_requests",
            "Requests from chat platforms, by platform and outcome.",
            ["platform", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "escalation_request_seconds",
            "Time to answer a chat platform's request.",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaches = Counter("escalation_deadlines_breached", "Deadlines breached.", registry=r)
        self.nudges = Counter(
            "escalation_nudges", "Nudges set off by the timekeeper, by kind.", ["kind"], registry=r
        )
        self.sent = Counter(
            "escalation_messages_sent", "Messages delivered by the outbox.", registry=r
        )
        self.send_failures = Counter(
            "escalation_send_failures",
            "Failed sends, by platform and reason.",
            ["platform", "reason"],
            registry=r,
        )
        self.tick_seconds = Histogram(
            "escalation_tick_seconds", "Duration of a tick.", buckets=LATENCY_BUCKETS, registry=r
        )
        r.register(StoreCollector(store, clock))

    def observe_tick(self, timers: TickReport, outbox: DispatchReport, seconds: float) -> None:
        """Count what a tick did."""
        self.tick_seconds.observe(seconds)
        for event_type, count in timers.events.items():
            if event_type in NUDGES:
                self.nudges.labels(NUDGES[event_type]).inc(count)
            if event_type == "DeadlineBreached":
                self.breaches.inc(count)
        self.observe_sends(outbox)

    def observe_sends(self, outbox: DispatchReport) -> None:
        """Count what the outbox did."""
        self.sent.inc(outbox.sent)
        for platform, reason in outbox.failures:
            self.send_failures.labels(platform, reason).inc()

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        return generate_latest(self.registry)
