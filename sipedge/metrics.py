"""The edge's metrics in Prometheus' text format, read off the core, the shell and the link
at scrape time (nothing is counted twice)."""

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from . import compiled


class _EdgeCollector:
    def __init__(self, server):
        self.server = server

    def collect(self):
        server, core = self.server, self.server.core
        stats, now = core.stats, time.time()

        bindings = GaugeMetricFamily("sipedge_registrations", "Registered bindings",
                                     labels=["endpoint"])
        by_endpoint = {"home": 0, "remote": 0}
        for binding in core.registrar.all_bindings():
            by_endpoint["remote" if binding.user_id.endswith("r") else "home"] += 1
        for endpoint, count in by_endpoint.items():
            bindings.add_metric([endpoint], count)
        yield bindings

        requests = CounterMetricFamily("sipedge_requests", "SIP requests received",
                                       labels=["method"])
        responses = CounterMetricFamily("sipedge_responses", "SIP responses sent",
                                        labels=["status"])
        for key, value in sorted(stats.items()):
            kind, _, label = key.partition(":")
            if kind == "request":
                requests.add_metric([label], value)
            elif kind == "response":
                responses.add_metric([label], value)
        yield requests
        yield responses

        for name, key, text in (
            ("sipedge_auth_failures", "auth_failures", "Failed digest authentications"),
            ("sipedge_auth_successes", "auth_success", "Successful digest authentications"),
            ("sipedge_challenges", "challenges", "401 challenges sent"),
            ("sipedge_malformed_messages", "malformed", "Messages answered 400 or dropped"),
            ("sipedge_retransmissions", "retransmissions", "Retransmitted requests absorbed"),
            ("sipedge_local_bans", "local_bans", "Sources the edge banned itself"),
            ("sipedge_local_lockouts", "local_lockouts", "Pairs the edge locked out itself"),
        ):
            yield CounterMetricFamily(name, text, value=stats.get(key, 0))
        yield CounterMetricFamily("sipedge_dropped_packets",
                                  "Packets and connections dropped from banned sources",
                                  value=server.dropped)
        timeouts = CounterMetricFamily(
            "sipedge_tcp_timeouts", "TCP connections closed for a timeout: a message not "
            "finished in time, no message since connecting, or silence", labels=["reason"])
        for reason, count in server.tcp_timeouts.items():
            timeouts.add_metric([reason], count)
        yield timeouts
        yield CounterMetricFamily("sipedge_tcp_reclaimed",
                                  "TCP connections without a message closed at the cap to "
                                  "admit a new one", value=server.tcp_reclaimed)
        yield CounterMetricFamily("sipedge_udp_answers_dropped",
                                  "UDP answers dropped because the send buffer was full",
                                  value=sum(udp.send_dropped for udp in server._udp))
        yield CounterMetricFamily("sipedge_errors", "Messages that failed in the edge",
                                  value=server.errors)
        yield CounterMetricFamily("sipedge_events_dropped",
                                  "Events dropped while the control plane was away",
                                  value=core.events_dropped)

        bans = GaugeMetricFamily("sipedge_bans", "Bans and lockouts in force", labels=["kind"])
        for kind, count in core.guard.counts(now).items():
            bans.add_metric([kind], count)
        yield bans
        yield GaugeMetricFamily("sipedge_events_queued", "Events waiting for the control plane",
                                value=len(core.events))
        yield GaugeMetricFamily("sipedge_tcp_connections", "Open TCP connections",
                                value=len(server.connections))
        yield GaugeMetricFamily("sipedge_config_version", "Outbox version applied",
                                value=core.config.version)
        yield InfoMetricFamily(
            "sipedge_core", "How the SIP core is loaded: compiled by Cython, python, or mixed",
            value={"build": compiled.summary()})
        link = server.link
        if link is not None:
            yield GaugeMetricFamily("sipedge_feed_lag", "Versions the edge is behind",
                                    value=link.feed_lag or 0)
            yield GaugeMetricFamily("sipedge_control_plane_connected",
                                    "1 while the last request to the control plane succeeded",
                                    value=1 if link.connected else 0)


def render_metrics(server):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EdgeCollector(server))
    return generate_latest(registry)
