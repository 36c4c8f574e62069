"""Prometheus metrics of one hub process, on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "hub_events_accepted", "Inbound events stored", ["channel", "status"], registry=r
        )
        self.duplicates = Counter(
            "hub_events_duplicate",
            "Repeat submissions answered with the first event",
            ["channel"],
            registry=r,
        )
        self.rejected = Counter(
            "hub_events_rejected",
            "Inbound requests refused before storing",
            ["channel", "reason"],
            registry=r,
        )
        self.processed = Counter(
            "hub_events_processed", "Events turned into deals", ["channel"], registry=r
        )
        self.failed = Counter(
            "hub_events_failed",
            "Event attempts that failed and will be retried",
            ["channel"],
            registry=r,
        )
        self.dead = Counter(
            "hub_events_dead", "Events that failed every attempt", ["channel"], registry=r
        )
        self.queue_depth = Gauge(
            "hub_inbox_queue_depth", "Inbox events by status", ["status"], registry=r
        )
        self.latency = Histogram(
            "hub_event_processing_seconds",
            "From acceptance to the deal committed",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.group_commit = Histogram(
            "hub_intake_group_size",
            "Events per intake commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "hub_intake_commit_seconds",
            "Time to store one group of events",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.deferred = Counter(
            "hub_worker_deferred_seconds",
            "Time workers left the CPU to a burst of incoming leads",
            registry=r,
        )
        self.notifications = Counter(
            "hub_notifications_total",
            "Notification sends by notifier and outcome (sent, retry, failed, review)",
            ["notifier", "outcome"],
            registry=r,
        )
        self.plugin_up = Gauge(
            "hub_plugin_running", "1 when the plugin is running", ["plugin"], registry=r
        )
