"""SMTP AUTH (RFC 4954, PLAIN and LOGIN): SME's authenticated relay for roaming users.

On SME, a user away from the office sends through the server by logging in (qpsmtpd's
auth plugins against the system's passwords); qpsmtpd then treats the connection as a
relay client. So here: a client that logs in may relay for the rest of its session, and
the checks for strangers leave its mail alone, as they do mail from RelayClients
(Transaction.authenticated). The password is checked by Dovecot (smtpfilter.dovecot_auth).

A client gets MAX_FAILURES tries a session, then 421 and the connection closed. Dovecot
answers each failure after 2 s, and later ones from the same address after up to 15 s,
but only one at a time: ten sessions at once from one address got 107 wrong passwords
answered a minute (decision 0032). So an address (an IPv6 client's /64) with
AuthFailureLimit failures in the last hour is answered 454 without Dovecot being asked,
until the oldest of them is an hour old. Every failure is logged with the client's
address (`auth=failed`, for fail2ban) and counted in spamkit_smtp_auth_total.
"""

from __future__ import annotations

import binascii
import contextlib
import ipaddress
import logging
import time
from base64 import b64decode
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from typing import Any, Protocol

from aiosmtpd.smtp import MISSING

from smtpfilter.dovecot_auth import AuthOutcome, DovecotAuth
from smtpfilter.logtext import printable
from smtpfilter.metrics import Metrics
from smtpfilter.networks import LocalClients
from spamkit.config import Config

log = logging.getLogger("spamkit.smtpfilter")

AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_UNAVAILABLE = "454 4.7.0 Temporary authentication failure, please try again later"
IN_TRANSACTION = "503 5.5.1 Error: AUTH not permitted during a mail transaction"
BAD_RESPONSE = "501 5.5.2 Cannot decode the response"
TOO_MANY = "421 4.7.0 Too many failed authentications, closing the session"
LIMITED = "454 4.7.0 Too many failed logins from your address, try again later"
MAX_FAILURES = 3  # tries a session (Postfix counts them among smtpd_hard_error_limit's 20)
FAILURE_WINDOW = 3600.0  # seconds over which AuthFailureLimit counts an address's failures
REMEMBERED_ADDRESSES = 100_000  # past this, the address that failed longest ago is forgotten


class LoginFailures:
    """Failed logins by client address over the last FAILURE_WINDOW: an IPv6 client by
    its /64, which one machine is usually given whole. LocalNetworks are never held back:
    a webmail on this machine logs its users in from loopback, and one user's typo must
    not lock out the others. Used on the event loop's thread only."""

    def __init__(self, limit: int, ours: LocalClients | None = None) -> None:
        self.limit = limit  # AuthFailureLimit; 0: no limit
        self.ours = ours or LocalClients([], [])
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        # logins Dovecot is checking now, by address: each may yet fail, so sessions at
        # once from one address cannot get more than the limit past between them
        self._asking: Counter[str] = Counter()

    def held_back(self, client: str, now: float | None = None) -> bool:
        """Whether `client` has used up its failures (counting the logins of its that are
        being checked): then it is not asked for a password, nor Dovecot asked."""
        if not self.limit or client in self.ours:
            return False
        key = _network_of(client)
        times = self._times.get(key)
        if times is not None:
            _forget_before(times, (time.monotonic() if now is None else now) - FAILURE_WINDOW)
        return len(times or ()) + self._asking[key] >= self.limit

    @contextlib.contextmanager
    def asking(self, client: str) -> Iterator[None]:
        """While Dovecot checks a login of `client`'s."""
        key = _network_of(client)
        self._asking[key] += 1
        try:
            yield
        finally:
            self._asking[key] -= 1
            if not self._asking[key]:
                del self._asking[key]

    def failed(self, client: str, now: float | None = None) -> None:
        if not self.limit or client in self.ours:
            return
        key = _network_of(client)
        times = self._times.pop(key, None) or deque()
        times.append(time.monotonic() if now is None else now)
        while len(times) > self.limit:  # (only the latest `limit` can matter)
            times.popleft()
        self._times[key] = times  # (last: the most recent failure)
        while len(self._times) > REMEMBERED_ADDRESSES:
            self._times.popitem(last=False)


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] < cutoff:
        times.popleft()


def _network_of(client: str) -> str:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class PasswordCheck(Protocol):
    """What checks a login: Dovecot's auth service (DovecotAuth) is the one there is."""

    async def check(self, login: bytes, password: bytes, authzid: bytes = b"", *, client: str,
                    local: str = "", secured: bool = False) -> AuthOutcome: ...


class SmtpAuth:
    """The AUTH command's dialogue with the client, once aiosmtpd has checked what comes
    before it (EHLO given, TLS when TlsBeforeAuth asks for it, not yet logged in, a
    mechanism it knows)."""

    def __init__(self, checker: PasswordCheck, metrics: Metrics | None = None,
                 failures: LoginFailures | None = None) -> None:
        self.checker = checker
        self.metrics = metrics
        self.failures = failures or LoginFailures(0)

    async def dialogue(self, server: Any, session: Any, envelope: Any, args: list[str], client: str) -> str | None:
        """The reply to AUTH `args` (mechanism, optional initial response), or None when
        one was already sent (a 501 for a client's "*", or the 421 that ends the session)."""
        if envelope.mail_from is not None:
            return IN_TRANSACTION
        mechanism = args[0].upper()
        if self.failures.held_back(client):  # (before a LOGIN asks for anything)
            return self._limited(client, mechanism)
        credentials = await (_plain(server, args) if mechanism == "PLAIN" else _login(server, args))
        if credentials is None:
            return None  # (aiosmtpd answered: the client cancelled, or sent bad base64)
        if isinstance(credentials, str):
            return credentials
        if self.failures.held_back(client):  # (its other sessions may have failed meanwhile)
            return self._limited(client, mechanism)
        authzid, login, password = credentials
        server.working = True  # (LimitedSMTP: the client is waiting on us, not idle)
        try:
            with self.failures.asking(client):
                outcome = await self.checker.check(login, password, authzid, client=client,
                                                   local=_local_address(server),
                                                   secured=_secured(session, client))
        finally:
            server.working = False
        shown = printable(login.decode("utf-8", "backslashreplace"), 100)
        if outcome.succeeded:
            session.authenticated = True
            session.spamkit_user = outcome.user
            log.info("client=%s auth=ok user=%s method=%s", client, printable(outcome.user, 100), mechanism)
            self._count("ok")
            return AUTH_OK
        if outcome.temporary:
            log.error("client=%s auth=unavailable user=%s method=%s: %s", client, shown, mechanism,
                      outcome.reason)
            self._count("unavailable")
            return AUTH_UNAVAILABLE
        failures = getattr(session, "spamkit_auth_failures", 0) + 1
        session.spamkit_auth_failures = failures
        self.failures.failed(client)
        log.warning("client=%s auth=failed user=%s method=%s failures=%d%s", client, shown, mechanism,
                    failures, f" reason={printable(outcome.reason, 100)}" if outcome.reason else "")
        self._count("failed")
        if failures < MAX_FAILURES:
            return AUTH_INVALID
        await server.push(TOO_MANY)
        if server.transport is not None:
            server.transport.close()
        return None

    def _limited(self, client: str, mechanism: str) -> str:
        log.warning("client=%s auth=limited method=%s", client, mechanism)
        self._count("limited")
        return LIMITED

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.logins.count(outcome)


def configured_auth(config: Config, metrics: Metrics | None = None,
                    failures: LoginFailures | None = None) -> SmtpAuth | None:
    """SMTP AUTH as SmtpAuthentication, DovecotAuthAddress, AuthTimeout and
    AuthFailureLimit set it up, or None when it is off. `failures`, the memory of the
    SmtpAuth this one replaces (at a reload), is kept: a reload lifts no one's limit."""
    if not config["SmtpAuthentication"]:
        return None
    ours = LocalClients(config["LocalNetworks"], [])
    if failures is None:
        failures = LoginFailures(config["AuthFailureLimit"], ours)
    else:
        failures.limit, failures.ours = config["AuthFailureLimit"], ours
    return SmtpAuth(DovecotAuth(config["DovecotAuthAddress"], config["AuthTimeout"]), metrics, failures)


def auth_warnings(config: Config) -> list[str]:
    """What keeps SmtpAuthentication from working, for `lint` and as `serve` starts (then
    as the user it runs as, whose right to Dovecot's socket is what counts)."""
    if not config["SmtpAuthentication"]:
        return []
    where = config.origins["SmtpAuthentication"]
    warnings = []
    if config["TlsBeforeAuth"] and not (config["TlsCertificate"] and config["TlsKey"]):
        warnings.append(f"{where}: SmtpAuthentication is on, but AUTH is never offered: TlsBeforeAuth "
                        "takes logins only after STARTTLS, which needs TlsCertificate and TlsKey")
    elif not config["TlsBeforeAuth"]:
        warnings.append(f"{config.origins['TlsBeforeAuth']}: TlsBeforeAuth is false: passwords are "
                        "taken on unencrypted sessions, where anyone on the way can read them")
    problem = DovecotAuth(config["DovecotAuthAddress"], min(config["AuthTimeout"], 5.0)).problem()
    if problem is not None:
        warnings.append(f"{config.where('DovecotAuthAddress')}: {problem}: every login would get 454")
    return warnings


Credentials = tuple[bytes, bytes, bytes]  # (authorization identity, login, password)


async def _plain(server: Any, args: list[str]) -> Credentials | str | None:
    """RFC 4616: [authzid] NUL login NUL password, given with AUTH or after an empty 334."""
    blob = await _first_response(server, args, "")
    if not isinstance(blob, bytes):
        return blob
    parts = blob.split(b"\0")
    if len(parts) != 3:
        return BAD_RESPONSE
    return parts[0], parts[1], parts[2]


async def _login(server: Any, args: list[str]) -> Credentials | str | None:
    """LOGIN: the name (with AUTH, or asked for) and the password, each base64."""
    login = await _first_response(server, args, "Username:")
    if not isinstance(login, bytes):
        return login
    password = await server.challenge_auth("Password:")
    if password is MISSING:
        return None
    return b"", login, password


async def _first_response(server: Any, args: list[str], challenge: str) -> bytes | str | None:
    """The client's first answer, decoded: given with AUTH (RFC 4954's initial response,
    "=" for an empty one), else asked for with `challenge`. BAD_RESPONSE for one that is
    not base64; None when aiosmtpd has answered a client that gave up ("*")."""
    if len(args) > 1:
        decoded = b"" if args[1] == "=" else _decoded(args[1])
        return BAD_RESPONSE if decoded is None else decoded
    answer = await server.challenge_auth(challenge)
    return None if answer is MISSING else bytes(answer)


def _decoded(text: str) -> bytes | None:
    try:
        return b64decode(text.encode("ascii", "replace"), validate=True)
    except (binascii.Error, ValueError):
        return None


def _local_address(server: Any) -> str:
    transport = getattr(server, "transport", None)
    name = transport.get_extra_info("sockname") if transport is not None else None
    return str(name[0]) if isinstance(name, tuple) and name else ""


def _secured(session: Any, client: str) -> bool:
    """What Dovecot calls a secured transport: TLS, or a client on this machine."""
    if getattr(session, "ssl", None) is not None:
        return True
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False

