"""Prometheus metrics over HTTP: messages by decision, refusals (and, after the queue, refusals
kept back) by filter, SMTP logins and TLS handshakes by outcome, scan time, checks a filter could not make,
and how each DNS list answers (smtpfilter.dnslists)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from smtpfilter.counters import LabelledCounter
from smtpfilter.dnslists import TALLY, ListTally

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# Checks a filter could not make, by filter and why: its database unusable, or the message
# too large to scan. The filters let such mail through (karma, greylist) or pass it on
# unscanned, so the mail alone does not show that a check has stopped. The process's: the
# filters count into it, the metrics read it.
UNCHECKED = LabelledCounter(
    "spamkit_filter_unchecked_total",
    "Checks a filter could not make, by filter and reason (database: its database unusable; "
    "size: over MaxMessageSize); the mail went on without them, or spamscore's "
    "WhenDatabaseDown applied.", ("filter", "reason"))


class Metrics:
    def __init__(self, lists: ListTally = TALLY, unchecked: LabelledCounter = UNCHECKED) -> None:
        self._lock = threading.Lock()  # (the scan-time histogram's)
        self.lists = lists
        self.unchecked = unchecked
        self.decisions = LabelledCounter("spamkit_messages_total", "Messages by what happened to them.",
                                         ("decision",))
        self.refusals = LabelledCounter(
            "spamkit_filter_refusals_total", "Refusals by the filter that refused: of messages "
            "at DATA, and of connections, HELO, MAIL or RCPT before it.", ("filter",))
        self.kept_back = LabelledCounter(
            "spamkit_filter_would_refuse_total", "Refusals kept back after the MTA's queue "
            "(SmtpAfterQueue), by filter: messages passed on marked X-Spam-Would-Refuse.", ("filter",))
        self.logins = LabelledCounter(
            "spamkit_smtp_auth_total", "SMTP AUTH attempts by outcome: ok, failed (wrong name or "
            "password), unavailable (Dovecot could not be asked, or could not decide), limited "
            "(the address had AuthFailureLimit failures in the last hour).", ("outcome",))
        self.tls = LabelledCounter(
            "spamkit_smtp_tls_total", "TLS handshakes by how the session asked for TLS "
            "(starttls, or implicit: --listen-tls) and outcome (ok, failed: see the log's "
            "tls=failed lines for why).", ("how", "outcome"))
        # when the TLS certificate shown to clients ends (a Unix time), once serve has one
        self.tls_certificate_end: Callable[[], float | None] = lambda: None
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, decision: str, filter_name: str, seconds: float) -> None:
        self.decisions.count(decision)
        if decision in ("rejected", "tempfailed") and filter_name:
            self.refusals.count(filter_name)
        with self._lock:
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[index] += 1
            self.count += 1
            self.total += seconds

    def refused(self, filter_name: str) -> None:
        """A refusal at connect, HELO, MAIL or RCPT (a message never sent)."""
        self.refusals.count(filter_name or "-")

    def would_refuse(self, filter_name: str) -> None:
        """A refusal kept back after the MTA's queue (SmtpAfterQueue): the message went on,
        marked X-Spam-Would-Refuse, since refusing it there would bounce it to its sender."""
        self.kept_back.count(filter_name)

    def tls_handshake(self, how: str, outcome: str) -> None:
        """One TLS handshake: how ("starttls", "implicit"), outcome ("ok", "failed")."""
        self.tls.count(how, outcome)

    def exposition(self) -> str:
        lines = (self.decisions.exposition() + self.refusals.exposition() + self.kept_back.exposition()
                 + self.logins.exposition() + self.tls.exposition())
        with self._lock:
            lines += ["# HELP spamkit_scan_seconds Time from end of DATA to the reply.",
                      "# TYPE spamkit_scan_seconds histogram"]
            lines += [f'spamkit_scan_seconds_bucket{{le="{b}"}} {n}' for b, n in zip(BUCKETS, self.buckets)]
            lines += [f'spamkit_scan_seconds_bucket{{le="+Inf"}} {self.count}',
                      f"spamkit_scan_seconds_sum {self.total:.6f}", f"spamkit_scan_seconds_count {self.count}"]
        if (end := self.tls_certificate_end()) is not None:
            lines += ["# HELP spamkit_tls_certificate_expiry_timestamp_seconds When the TLS certificate "
                      "shown to clients now ends (Unix time): alert on it minus time(). A renewed "
                      "file that could not be loaded leaves the old one's.",
                      "# TYPE spamkit_tls_certificate_expiry_timestamp_seconds gauge",
                      f"spamkit_tls_certificate_expiry_timestamp_seconds {end:.0f}"]
        lines += self.unchecked.exposition()
        lines += self.lists.exposition()
        return "\n".join(lines) + "\n"

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = metrics.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # (http.server binds IPv4 only: MetricsListen = "[::1]:9100" failed to start)
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        server = Server((host, port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
        return server
