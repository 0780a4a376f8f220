"""Passwords checked by Dovecot's auth service, as Postfix's `smtpd_sasl_type = dovecot` does.

A mail server that runs Dovecot for IMAP already has the users and their passwords there
(on SME, the system's own, through PAM), so `serve` asks it rather than keeping a second
password list. The client side of Dovecot's authentication protocol (Dovecot's
Design/AuthProtocol, v1.x): a line-based exchange on its auth-client socket, Unix or TCP.
One connection per login, as a login is rare next to the mail it unlocks; a connection
made after `serve` dropped its privileges, so Dovecot restarting costs nothing.

Every check goes as PLAIN (LOGIN's two answers are sent as one PLAIN response), which
Dovecot offers by default. Dovecot decides, and applies its own defences: a failed login
is answered after auth_failure_delay (2 s), and its per-address penalty grows with
repeated failures from one client address, which `serve` passes on (rip).
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass

from spamkit.config.endpoints import socket_endpoint

MAJOR_VERSION = b"1"
LINE_BYTES = 16384  # Dovecot's AUTH_CLIENT_MAX_LINE_LENGTH
# Dovecot 2.3's tab-escaping of parameter values: \001 then one of these
_UNESCAPED = {"0": "\0", "1": "\001", "t": "\t", "r": "\r", "n": "\n"}


class DovecotUnavailable(Exception):
    """Dovecot could not be reached, did not answer in time, or spoke another protocol."""


@dataclass(frozen=True)
class AuthOutcome:
    user: str = ""  # who logged in, as Dovecot names them (OK's user=); empty on failure
    temporary: bool = False  # Dovecot could not decide (its database down, say): try later
    reason: str = ""  # for the log: Dovecot's reason, or why it could not be asked

    @property
    def succeeded(self) -> bool:
        return bool(self.user)


def unescape(value: str) -> str:
    """A parameter value as Dovecot 2.3 writes it, tab-escaping undone."""
    if "\001" not in value:
        return value
    out, chars = [], iter(value)
    for char in chars:
        if char == "\001":
            following = next(chars, "")
            out.append(_UNESCAPED.get(following, following))
        else:
            out.append(char)
    return "".join(out)


def _parameters(fields: list[str]) -> dict[str, str]:
    """Optional parameters of a reply: name=value, or a bare name (a flag, as "")."""
    named = {}
    for field in fields:
        name, _, value = field.partition("=")
        named[name] = unescape(value)
    return named


class DovecotAuth:
    """Dovecot's auth-client listener: a Unix socket path (or unix:PATH) or HOST:PORT of an
    inet_listener of its `service auth`."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.endpoint = socket_endpoint(address)

    async def check(self, login: bytes, password: bytes, authzid: bytes = b"", *, client: str,
                    local: str = "", secured: bool = False) -> AuthOutcome:
        """Whether `login` with `password` may log in (acting as `authzid`, if given and
        Dovecot allows it: a master user). `client` is the SMTP client's address, for
        Dovecot's penalty and log; `secured`, whether the session is encrypted (Dovecot
        refuses plaintext passwords on other sessions unless disable_plaintext_auth = no)."""
        if any(b"\0" in part for part in (login, password, authzid)):
            return AuthOutcome(reason="a NUL in the name or password")
        response = base64.b64encode(authzid + b"\0" + login + b"\0" + password).decode("ascii")
        options = ["service=smtp", "nologin"]
        options += [f"rip={client}"] if _fit_for_a_line(client) else []
        options += [f"lip={local}"] if _fit_for_a_line(local) else []
        options += ["secured"] if secured else []
        request = "\t".join(["AUTH", "1", "PLAIN", *options, f"resp={response}"]) + "\n"
        try:
            reply = await asyncio.wait_for(self._ask(request.encode("ascii")), self.timeout)
        except asyncio.TimeoutError:
            return AuthOutcome(temporary=True, reason=f"Dovecot at {self.address} did not answer "
                                                      f"within {self.timeout:g}s")
        except (OSError, DovecotUnavailable) as error:
            return AuthOutcome(temporary=True, reason=f"Dovecot at {self.address}: {error}")
        return _outcome(reply)

    async def _ask(self, request: bytes) -> list[str]:
        """The handshake with `request` pipelined after it; the fields of the reply to it."""
        mechanisms, reply = await self._exchange(request)
        if "PLAIN" not in mechanisms:
            raise DovecotUnavailable("it does not offer PLAIN (auth_mechanisms)")
        return reply

    async def _exchange(self, request: bytes = b"") -> tuple[list[str], list[str]]:
        """(the mechanisms the handshake offers, the fields of the reply to `request`: none
        without one)."""
        if isinstance(self.endpoint, str):
            reader, writer = await asyncio.open_unix_connection(self.endpoint, limit=LINE_BYTES)
        else:
            host, port = self.endpoint
            reader, writer = await asyncio.open_connection(host, port, limit=LINE_BYTES)
        try:
            writer.write(b"VERSION\t" + MAJOR_VERSION + b"\t2\nCPID\t%d\n" % os.getpid() + request)
            await writer.drain()
            mechanisms = await _handshake(reader)
            while request:
                fields = await _line(reader)
                if fields[:2] in (["OK", "1"], ["FAIL", "1"], ["CONT", "1"]):
                    return mechanisms, fields
            return mechanisms, []
        finally:
            writer.close()

    def problem(self) -> str | None:
        """Why logins could not be checked here, or None: asked once, for `lint` and as
        `serve` starts (as the user it runs as, which needs the right to the socket)."""
        try:
            mechanisms = asyncio.run(asyncio.wait_for(self._exchange(), self.timeout))[0]
        except asyncio.TimeoutError:
            return f"Dovecot's auth service at {self.address} did not answer within {self.timeout:g}s"
        except PermissionError:
            return (f"no permission to use Dovecot's auth socket {self.address}: give this user a "
                    "unix_listener of its own in Dovecot's `service auth` (see README)")
        except (OSError, DovecotUnavailable) as error:
            return f"Dovecot's auth service at {self.address} cannot be used: {error}"
        if "PLAIN" not in mechanisms:
            return (f"Dovecot at {self.address} does not offer PLAIN (its auth_mechanisms: "
                    f"{' '.join(mechanisms) or 'none'})")
        return None


async def _handshake(reader: asyncio.StreamReader) -> list[str]:
    """The server's side of the handshake, up to DONE: the mechanisms it offers."""
    fields = await _line(reader)
    if fields[:1] != ["VERSION"] or fields[1:2] != [MAJOR_VERSION.decode()]:
        raise DovecotUnavailable(f"not Dovecot's auth protocol v1 (it said {' '.join(fields)[:60]!r})")
    mechanisms = []
    while (fields := await _line(reader))[0] != "DONE":
        if fields[0] == "MECH" and len(fields) > 1:
            mechanisms.append(fields[1].upper())
    return mechanisms


async def _line(reader: asyncio.StreamReader) -> list[str]:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise DovecotUnavailable("it closed the connection") from None
    except asyncio.LimitOverrunError:
        raise DovecotUnavailable(f"a line longer than {LINE_BYTES} bytes") from None
    return line.rstrip(b"\n").decode("utf-8", "replace").split("\t")


def _outcome(fields: list[str]) -> AuthOutcome:
    """The reply to AUTH: OK (with user=), FAIL (code=temp_fail, or temp before Dovecot
    2.3, when it could not decide), or CONT, which PLAIN with its response never needs."""
    parameters = _parameters(fields[2:])
    if fields[0] == "OK":
        return AuthOutcome(user=parameters.get("user") or "?")
    if fields[0] == "CONT":
        return AuthOutcome(temporary=True, reason="Dovecot asked for more than a PLAIN response")
    temporary = parameters.get("code") == "temp_fail" or "temp" in parameters
    reason = parameters.get("reason") or parameters.get("code") or ""
    return AuthOutcome(temporary=temporary, reason=reason)


def _fit_for_a_line(address: str) -> bool:
    """An address fit to be a parameter: no tab or line end from anywhere."""
    return bool(address) and not any(char in address for char in "\t\r\n\001")
