"""TLS on `serve`'s sessions: STARTTLS on the plain port, and TLS from the first byte on
the port `--listen-tls` opens (465, RFC 8314's "submissions", SME's SSL port).

What a handshake that fails is logged and counted as: one line an attempt, with the
reason OpenSSL gives (a client that does not trust the certificate says so with its
alert: `TLSV1_ALERT_UNKNOWN_CA`), instead of aiosmtpd's traceback; an
administrator whose certificate expired sees failures climb in
`spamkit_smtp_tls_total{outcome="failed"}` before the users call.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtpfilter.metrics import Metrics

log = logging.getLogger("spamkit.smtpfilter")

STARTTLS = "starttls"  # the session began in plaintext and asked for TLS
IMPLICIT = "implicit"  # TLS from the first byte (--listen-tls)
ALREADY_ACTIVE = "554 5.5.1 Error: TLS already active"  # (Postfix's words)


def failure_reason(error: BaseException | None) -> str:
    """A handshake failure in a word or two for the log: OpenSSL's reason code where it
    gives one, else what happened to the connection."""
    cause = error.__cause__ if error is not None and error.__cause__ is not None else error
    if cause is None:
        return "closed"  # the client hung up before the handshake was over
    if isinstance(cause, ssl.SSLError):
        return str(cause.reason or cause.strerror or type(cause).__name__)
    if isinstance(cause, TimeoutError) or (
            isinstance(cause, ConnectionAbortedError) and "longer than" in str(cause)):
        return "timeout"  # (SmtpTimeout, or asyncio's ssl_handshake_timeout)
    if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(cause, asyncio.CancelledError):
        return "cancelled"
    return type(cause).__name__


def handshake_failed(client: str, how: str, error: BaseException | None, metrics: Metrics | None) -> None:
    """Log and count a failed handshake (`how`: STARTTLS or IMPLICIT)."""
    log.info("client=%s tls=failed how=%s reason=%s", client, how, failure_reason(error))
    counted(metrics, how, "failed")


def counted(metrics: Metrics | None, how: str, outcome: str) -> None:
    """One handshake in the metrics, when the handler has them."""
    if metrics is not None:
        metrics.tls_handshake(how, outcome)
