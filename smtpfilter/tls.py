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
import subprocess
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from spamkit.errors import ConfigError

if TYPE_CHECKING:
    from smtpfilter.metrics import Metrics

log = logging.getLogger("spamkit.smtpfilter")

STARTTLS = "starttls"  # the session began in plaintext and asked for TLS
IMPLICIT = "implicit"  # TLS from the first byte (--listen-tls)
ALREADY_ACTIVE = "554 5.5.1 Error: TLS already active"  # (Postfix's words)
RENEW_DAYS = 14  # a certificate this close to its end is warned of (Let's Encrypt renews at 30)


def server_context(certificate: str, key: str, origins: Mapping[str, str]) -> ssl.SSLContext | None:
    """The server side of STARTTLS (and of --listen-tls), or None when neither file is
    configured.

    `serve` loads it before the port opens, so a wrong path or a key that does not match
    the certificate stops it with the option's name instead of failing each handshake;
    `spamkit lint` loads it too, to report the same.
    """
    if not certificate and not key:
        return None
    if not (certificate and key):
        given, missing = ("TlsCertificate", "TlsKey") if certificate else ("TlsKey", "TlsCertificate")
        raise ConfigError(f"{given} is set ({origins.get(given)}) but {missing} is empty: "
                          "STARTTLS needs both")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"TlsCertificate/TlsKey ({origins.get('TlsCertificate')}): cannot load "
                          f"{certificate} with key {key}: {error}") from None
    return context


def expiry_warnings(certificate: str, origin: str, now: float | None = None) -> list[str]:
    """That the certificate (the first of TlsCertificate's chain) has expired, or ends
    within RENEW_DAYS: clients that check it then refuse STARTTLS, and most senders fall
    back to plaintext or stop sending. Read with the openssl command; none without it."""
    end = certificate_end(certificate)
    if end is None:
        return []
    left = end - (time.time() if now is None else now)
    day = time.strftime("%Y-%m-%d", time.gmtime(end))
    if left <= 0:
        return [f"TlsCertificate ({origin}): {certificate} expired on {day}: clients that "
                "check certificates refuse STARTTLS with it; renew it"]
    if left < RENEW_DAYS * 86400:
        days = int(left // 86400)
        return [f"TlsCertificate ({origin}): {certificate} expires on {day}, in {days} "
                f"day{'' if days == 1 else 's'}: renew it"]
    return []


def certificate_end(certificate: str) -> float | None:
    """When the file's (first) certificate ends, as a Unix time; None when it cannot be read."""
    try:
        done = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", certificate],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    name, _, value = done.stdout.strip().partition("=")
    if done.returncode != 0 or name != "notAfter":
        return None
    try:
        return float(ssl.cert_time_to_seconds(value))
    except ValueError:
        return None


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
