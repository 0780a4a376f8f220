"""pyzor: whether Pyzor's users have reported this message as spam (SpamAssassin's Pyzor
plugin, which SME runs inside its spamassassin: the guide's "Pyzor Timeout" section).

A Pyzor server keeps, for the digest of a message's body text, how many times its users
reported it as spam and how many times as wanted mail ("welcomelisted"). The filter asks
the PyzorServers in turn, over UDP, and writes what it heard in an X-Spamkit-Pyzor header
for the rules (PYZOR_CHECK). As in SpamAssassin, the message counts as listed when it was
reported PyzorCountMin times or more, unless it was welcomelisted at least
PyzorWelcomelistMin times and at least PyzorWelcomelistFactor times its reports; counts
of a million reports or ten thousand welcomelistings are what every empty body gets, and
list nothing.

The digest is Pyzor's own (its Python package's DataDigester), so a server's records from
every other Pyzor client apply. No server answering within PyzorTimeout leaves no header:
the message goes on, scored without it, and spamkit_filter_unchecked_total counts it.
Mail from LocalNetworks and RelayClients is not asked about (a digest of our users' mail
would go to a public server), nor mail over MaxMessageSize, which is not scored either.
An X-Spamkit-Pyzor that came with the message is removed, so the header can be trusted.
Off unless "pyzor" is in SmtpFilters, before spamscore.
"""

from __future__ import annotations

import email
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction
from smtpfilter.headers import without_fields
from smtpfilter.metrics import UNCHECKED
from smtpfilter.networks import LocalClients
from spamkit.config.endpoints import split_host_port
from spamkit.errors import SpamkitError
from spamkit.rules.evals.pyzor import HEADER, LISTED

log = logging.getLogger("spamkit.smtpfilter")

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


def body_digest(data: bytes) -> str | None:
    """Pyzor's digest of a message's body text; None when it has none to give."""
    from pyzor.digest import DataDigester

    try:
        return DataDigester(email.message_from_bytes(data, policy=policy.compat32)).value or None
    except Exception as error:  # (the package's own code, on any bytes: a digest is not worth a 451)
        log.info("pyzor: no digest of a message (%s: %s)", type(error).__name__, error)
        return None


class PyzorClient:
    """Asks the servers in turn until one answers, all within `timeout` seconds: each gets
    an equal share of the time left, so one that never answers (UDP: nothing says it is
    gone) leaves the others time."""

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


class Pyzor(Filter):
    name = "pyzor"
    blocking = True  # waits on the servers

    def __init__(self, client: PyzorClient, thresholds: Thresholds, local: LocalClients,
                 max_bytes: int) -> None:
        # imported now, not at the top (29 ms that `lint` and a `serve` without this filter
        # need not pay), so that a broken install stops `serve` at start, not each message
        try:
            import pyzor.client  # noqa: F401
            import pyzor.digest  # noqa: F401
        except ImportError as error:
            raise SpamkitError(f"the pyzor filter needs the Python package pyzor, which cannot "
                               f"be imported ({error}): pip install pyzor") from None
        self.client = client
        self.thresholds = thresholds
        self.local = local
        self.max_bytes = max_bytes

    def data(self, tx: Transaction) -> Decision:
        tx.data = without_fields(tx.data, HEADER.lower(), lambda value: True)
        if self.local.holds(tx) or len(tx.data) > self.max_bytes:
            return CONTINUE
        digest = body_digest(tx.data)
        if digest is None:
            return CONTINUE
        answer = self.client.check(digest)
        if answer is None:
            UNCHECKED.count(self.name, "unanswered")
            return CONTINUE
        verdict = LISTED if self.thresholds.listed(answer) else "not listed"
        tx.data = (f"{HEADER}: {verdict}, reported {answer.reported} times, welcomelisted "
                   f"{answer.welcomelisted} times, by {answer.server}\r\n").encode() + tx.data
        return CONTINUE
