"""tortie-felixd's Prometheus metrics. docs/metrics.md lists each; a test keeps the two in step."""

from __future__ import annotations

from runtime.prom import CollectorRegistry, Counter, Gauge, Histogram


class FelixMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.routes = Gauge(
            "tortie_felix_routes", "Routes felixd has programmed, by mode", ["mode"], registry=r)
        self.programming_seconds = Histogram(
            "tortie_felix_programming_latency_seconds",
            "From a feed message's arrival to the kernel's acknowledgement of the change",
            buckets=(1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0), registry=r)
        self.resyncs = Counter(
            "tortie_felix_resyncs", "Full reconciles of the kernel against the plan, by trigger",
            ["trigger"], registry=r)
        self.drift_repairs = Counter(
            "tortie_felix_drift_repairs", "Kernel objects found different from the plan and repaired",
            ["kind"], registry=r)
        self.netlink_errors = Counter(
            "tortie_felix_netlink_errors", "Kernel operations that failed, by operation", ["op"], registry=r)
        self.stale_routes = Gauge(
            "tortie_felix_stale_routes", "Routes kept while the feed is down or resyncing", registry=r)
        self.devices = Gauge(
            "tortie_felix_devices", "Tunnel devices present (1) or absent (0)", ["device"], registry=r)
        self.config_reloads = Counter(
            "tortie_felix_config_reloads", "Configuration reloads, by result", ["result"], registry=r)
        self.feed_connected = Gauge(
            "tortie_felix_feed_connected", "1 while the route feed from bgpd is connected", registry=r)
        self.kernel_unsupported = Gauge(
            "tortie_felix_kernel_feature_missing", "1 when a kernel feature a pool needs is missing",
            ["feature"], registry=r)
        self.plan_warnings = Gauge(
            "tortie_felix_plan_warnings", "Routes the planner could not program (see the log)", registry=r)
