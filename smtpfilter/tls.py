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
import importlib
import logging
import os
import pwd
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from spamkit.atomicfile import FileSignature, file_signature
from spamkit.errors import ConfigError

if TYPE_CHECKING:
    from smtpfilter.metrics import Metrics

# cert_time_to_seconds's time.strptime imports its module on first use: that is after serve
# gave up root, and perhaps the right to read Python (a pyenv under /root), so now
importlib.import_module("_strptime")

log = logging.getLogger("spamkit.smtpfilter")

STARTTLS = "starttls"  # the session began in plaintext and asked for TLS
IMPLICIT = "implicit"  # TLS from the first byte (--listen-tls)
ALREADY_ACTIVE = "554 5.5.1 Error: TLS already active"  # (Postfix's words)
RENEW_DAYS = 14  # a certificate this close to its end is warned of (Let's Encrypt renews at 30)
CHECK_SECONDS = 5.0  # how often a running serve looks whether TlsCertificate or TlsKey changed


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
    return end_warnings(certificate_end(certificate), certificate, origin, now)


def end_warnings(end: float | None, certificate: str, origin: str, now: float | None = None) -> list[str]:
    """expiry_warnings of a certificate whose end is known (None: not known, no warning)."""
    if end is None:
        return []
    left = end - (time.time() if now is None else now)
    day = _day(end)
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


class CertificateInForce:
    """The certificate and key `serve` shows its clients, read again when their files
    change and at each reload (SIGHUP).

    Certificates are renewed while the filter runs: Let's Encrypt's every 60 days, by a
    certbot that replaces the files and, unless told to, reloads nothing. A filter that
    kept the certificate it read at start showed an expired one from the 90th day on, and
    mail programs on 465 and 587 refused to send. The new pair is installed for sessions
    that start after it (those under way keep theirs); one that cannot be loaded (a key
    not matching its certificate half way through a renewal, a key the filter's user may
    not read) is logged once a change and leaves the pair in force. Once a day the log
    also says when the certificate in force has expired or soon will.
    """

    def __init__(self, certificate: str, key: str, origins: Mapping[str, str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.certificate, self.key, self.origins = certificate, key, origins
        self._clock = clock
        self._state = self._files_state()  # (before loading: a change meanwhile is seen)
        self.context = server_context(certificate, key, origins)
        self.ends = certificate_end(certificate) if self.context is not None else None
        self._install: Callable[[ssl.SSLContext], None] | None = None
        self._next_check = clock() + CHECK_SECONDS
        self._next_expiry_warning = clock() + 86400  # (serve's start warnings said it today)

    def installing_with(self, install: Callable[[ssl.SSLContext], None]) -> None:
        """Where a new context goes (the controller's sessions to come)."""
        self._install = install

    def _files_state(self) -> tuple[FileSignature | None, FileSignature | None]:
        return file_signature(self.certificate), file_signature(self.key)

    def poll(self) -> None:
        """Called often; every CHECK_SECONDS, load the pair again if a file changed, and
        once a day warn of the end of the certificate in force."""
        now = self._clock()
        if self.context is None or now < self._next_check:
            return
        self._next_check = now + CHECK_SECONDS
        state = self._files_state()
        if state != self._state:
            self._state = state
            self._load("changed")
        if now >= self._next_expiry_warning:
            self._next_expiry_warning = now + 86400
            for warning in self.expiry_warnings():
                log.warning("tls: %s", warning)

    def reload(self, certificate: str, key: str, origins: Mapping[str, str]) -> list[str]:
        """SIGHUP: the pair the configuration now names, loaded. The settings that would
        switch TLS on or off, which needs a restart, are returned to be said."""
        on = self.context is not None
        if bool(certificate and key) != on:  # (named as the settings that changed)
            return [name for name, value in (("TlsCertificate", certificate), ("TlsKey", key))
                    if bool(value) != on]
        if not on:
            return []
        self.certificate, self.key, self.origins = certificate, key, origins
        self._state = self._files_state()
        self._load("reload")
        return []

    def expiry_warnings(self, now: float | None = None) -> list[str]:
        """That the certificate in force has expired or ends within RENEW_DAYS (the one
        loaded, which is not the file's when loading the file's failed)."""
        return end_warnings(self.ends, self.certificate, self.origins.get("TlsCertificate", "?"), now)

    def _load(self, why: str) -> None:
        try:
            context = server_context(self.certificate, self.key, self.origins)
        except ConfigError as error:
            log.error("tls: %s: %s; the certificate in force%s stays%s", why, error,
                      f" (until {_day(self.ends)})" if self.ends is not None else "", self._unreadable())
            return
        assert context is not None and self._install is not None
        self._install(context)
        self.context = context
        self.ends = certificate_end(self.certificate)
        log.info("tls: %s: %s loaded%s", why, self.certificate,
                 f", valid until {_day(self.ends)}" if self.ends is not None else "")
        for warning in self.expiry_warnings():
            log.warning("tls: %s", warning)

    def _unreadable(self) -> str:
        """Why, when it is that this process's user may not read a file."""
        if os.geteuid() == 0:
            return ""
        unreadable = [path for path in (self.certificate, self.key) if not os.access(path, os.R_OK)]
        if not unreadable:
            return ""
        user = _user_name()
        return (f": {' and '.join(unreadable)} cannot be read by {user}, the user serve runs as; "
                f"give one of {user}'s groups read access (Debian: chgrp ssl-cert, chmod 640, "
                f"adduser {user} ssl-cert) and restart serve")


def _day(moment: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(moment)) if moment is not None else "?"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
