"""Pyzor's client as spamkit uses it: the digest of a message's body text, the servers
asked in turn, SpamAssassin's reading of their answer, and the header that records it
for the rules (PYZOR_CHECK, spamkit/rules/evals/pyzor.py).

Three places ask: the SMTP filter's pyzor check (smtpfilter/plugins/pyzor.py), `spamkit
spamd --pyzor` (SpamAssassin's spamd asks too, with its Pyzor plugin loaded) and
`spamkit check --pyzor` / `spamkit deliver --pyzor`. All read PyzorServers,
PyzorTimeout and the thresholds from the configuration, so a message scores the same
wherever it is scanned.

A Pyzor server keeps, for the digest of a message's body text, how many times its users
reported it as spam and how many times as wanted mail ("welcomelisted"). As in
SpamAssassin, a message counts as listed when it was reported PyzorCountMin times or
more, unless it was welcomelisted at least PyzorWelcomelistMin times and at least
PyzorWelcomelistFactor times its reports; counts of a million reports or ten thousand
welcomelistings are what every empty body gets, and list nothing. The digest is Pyzor's
own (its Python package's DataDigester), so every other Pyzor client's reports apply.

The package (and the standard library's email parser it reads with) is imported when a
check is built, not with this module: `check`, `deliver`, `lint` and a `serve` without
the check need not pay its 29 ms, and a broken install stops a daemon at its start, not
at each message.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from spamkit.config import Config
from spamkit.config.endpoints import split_host_port
from spamkit.errors import SpamkitError
from spamkit.rules.evals.pyzor import HEADER, LISTED

log = logging.getLogger("spamkit.pyzor")

PYZOR_PORT = 24441
EMPTY_BODY_REPORTS = 1_000_000  # counts this high are every empty body's digest (SpamAssassin's limits)
EMPTY_BODY_WELCOMELISTS = 10_000


@dataclass(frozen=True)
class PyzorAnswer:
    reported: int
    welcomelisted: int
    server: str


@dataclass(frozen=True)
class Thresholds:
    count_min: int = 5
    welcomelist_min: int = 10
    welcomelist_factor: float = 0.2

    def listed(self, answer: PyzorAnswer) -> bool:
        """SpamAssassin's reading of a Pyzor answer."""
        if answer.reported >= EMPTY_BODY_REPORTS or answer.welcomelisted >= EMPTY_BODY_WELCOMELISTS:
            return False
        if answer.welcomelisted >= self.welcomelist_min \
                and answer.welcomelisted >= answer.reported * self.welcomelist_factor:
            return False
        return answer.reported >= self.count_min


def pyzor_servers(entries: Sequence[str]) -> list[tuple[str, int]]:
    """PyzorServers' entries as (host, port); the port is Pyzor's 24441 unless given."""
    return [split_host_port(entry, PYZOR_PORT) for entry in entries]


# a body with a text and an HTML part: what a digest goes through
_WARM_UP_MESSAGE = (b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n"
                    b"\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nwarming the digester up\r\n"
                    b"--b\r\nContent-Type: text/html\r\n\r\n<p>warming the digester up</p>\r\n--b--\r\n")


def require_package(what: str) -> None:
    """Import the pyzor package now, or say in one line what is missing and for what; and
    load what a digest and a request load on first use (the email parser, the HTML
    stripper, the request's signature): a daemon calls this before it gives up root,
    after which it may not be able to read the Python installation (Scanner.warm_up)."""
    try:
        import pyzor.account
        import pyzor.client  # noqa: F401
        import pyzor.digest
        import pyzor.message
    except ImportError as error:
        raise SpamkitError(f"{what} needs the Python package pyzor, which cannot be imported "
                           f"({error}): pip install pyzor") from None
    digest = body_digest(_WARM_UP_MESSAGE) or ""
    request = pyzor.message.CheckRequest(digest)
    request.init_for_sending()
    account = pyzor.account.AnonymousAccount
    request["Sig"] = pyzor.account.sign_msg(pyzor.account.hash_key(account.key, account.username), 0, request)
    request.as_string().encode("utf8")
    "pyzor.example".encode("idna")  # (getaddrinfo's, for a server named by host name)


def body_digest(data: bytes) -> str | None:
    """Pyzor's digest of a message's body text; None when it has none to give."""
    import email
    from email import policy

    from pyzor.digest import DataDigester

    try:
        return DataDigester(email.message_from_bytes(data, policy=policy.compat32)).value or None
    except Exception as error:  # (the package's own code, on any bytes: a digest is not worth a failure)
        log.info("pyzor: no digest of a message (%s: %s)", type(error).__name__, error)
        return None


class PyzorClient:
    """Asks the servers in turn until one answers, all within `timeout` seconds: each gets
    an equal share of the time left, so one that never answers (UDP: nothing says it is
    gone) leaves the others time. Thread-safe: each request has its own socket."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float) -> None:
        self.servers = servers
        self.timeout = timeout

    def check(self, digest: str) -> PyzorAnswer | None:
        import pyzor
        from pyzor.client import Client

        deadline = time.monotonic() + self.timeout
        for position, (host, port) in enumerate(self.servers):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                share = left / (len(self.servers) - position)
                response = Client(timeout=share).check(digest, (host, port))
                if response.get_code() != 200:
                    raise pyzor.CommError(f"{response.get_code()} {response.get_diag()}")
                return PyzorAnswer(int(response["Count"]), int(response["WL-Count"]), f"{host}:{port}")
            except (pyzor.CommError, OSError, KeyError, ValueError) as error:
                log.warning("pyzor server %s:%d did not answer: %s", host, port, error)
        return None


@dataclass(frozen=True)
class Recorded:
    data: bytes  # the message, its X-Spamkit-Pyzor ours alone
    answer: PyzorAnswer | None  # None: not asked (no digest), or no server answered
    asked: bool  # False: over MaxMessageSize, or no body text to digest
    listed: bool = False  # what the thresholds make of the answer
    header: str | None = None  # the X-Spamkit-Pyzor value written, when there was an answer

    def as_json(self) -> dict[str, object] | None:
        """The answer as `--json` output gives it (None: not asked, or not answered)."""
        if self.answer is None:
            return None
        return {"listed": self.listed, "reported": self.answer.reported,
                "welcomelisted": self.answer.welcomelisted, "server": self.answer.server}


class PyzorCheck:
    """One message's question and the header line that records the answer."""

    def __init__(self, client: PyzorClient, thresholds: Thresholds, max_bytes: int,
                 what: str = "the pyzor check") -> None:
        require_package(what)
        self.client = client
        self.thresholds = thresholds
        self.max_bytes = max_bytes

    @classmethod
    def from_config(cls, config: Config, what: str = "the pyzor check") -> PyzorCheck:
        return cls(PyzorClient(pyzor_servers(config["PyzorServers"]), config["PyzorTimeout"]),
                   Thresholds(config["PyzorCountMin"], config["PyzorWelcomelistMin"],
                              config["PyzorWelcomelistFactor"]), config["MaxMessageSize"], what)

    def digest(self, data: bytes) -> str | None:
        """The digest to ask about; None for a message over MaxMessageSize (it is not
        scored either, and digesting 50 MB is not free) or with no body text to digest."""
        return None if len(data) > self.max_bytes else body_digest(data)

    def recorded(self, raw: bytes, ask: bool = True) -> Recorded:
        """The message with what the servers said in X-Spamkit-Pyzor at its top, in its own
        line ends, and the answer. An X-Spamkit-Pyzor the message came with is removed
        first, answer or not (or asked or not), so the one PYZOR_CHECK reads is ours."""
        from spamkit.verdict import with_headers

        digest = self.digest(raw) if ask else None
        answer = None if digest is None else self.client.check(digest)
        value = None if answer is None else self.header_value(answer)
        added = [] if value is None else [(HEADER, value)]
        return Recorded(with_headers(raw, added, dropping=_PYZOR_FIELD), answer, digest is not None,
                        answer is not None and self.thresholds.listed(answer), value)

    def header_value(self, answer: PyzorAnswer) -> str:
        """X-Spamkit-Pyzor's value: the verdict first (what check_pyzor reads), then the
        counts and the server, for whoever reads the message's headers."""
        verdict = LISTED if self.thresholds.listed(answer) else "not listed"
        return (f"{verdict}, reported {answer.reported} times, welcomelisted "
                f"{answer.welcomelisted} times, by {answer.server}")


# the field where it starts (spaces before the colon too: the parser reads
# "X-Spamkit-Pyzor :" as the field)
_PYZOR_FIELD = re.compile(re.escape(HEADER.encode()) + rb"[ \t]*:", re.IGNORECASE)


__all__ = ["HEADER", "PyzorAnswer", "PyzorCheck", "PyzorClient", "Recorded", "Thresholds",
           "body_digest", "pyzor_servers", "require_package"]
