"""The Filter seam: plugins answer at SMTP stages; the first decisive answer wins."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class Action(enum.Enum):
    CONTINUE = "continue"
    ACCEPT = "accept"  # skip the remaining filters
    REJECT = "reject"  # 5xx
    TEMPFAIL = "tempfail"  # 4xx


@dataclass(frozen=True)
class Decision:
    action: Action
    reply: str = ""  # the SMTP reply, e.g. "550 5.7.1 Message rejected as spam"
    filter: str = ""


CONTINUE = Decision(Action.CONTINUE)
# the note the geoip filter leaves (the client's country code, "-" when not placed) and
# the log lines show as country=
COUNTRY_NOTE = "country"


@dataclass
class Transaction:
    """One message on its way through: the envelope, the data, and what filters decided."""

    peer: str
    helo: str = ""
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    data: bytes = b""
    notes: dict[str, object] = field(default_factory=dict)  # for the log line; one per SMTP
    # transaction, from MAIL to DATA, so a filter's RCPT stage may leave a note for its DATA
    named_by: str = ""  # the MTA in front that named `peer` with XFORWARD, if one did
    # who logged in with SMTP AUTH in this session (smtpfilter/auth.py); such a client is
    # one of ours wherever it connects from, as qpsmtpd makes it a relay client
    authenticated: str = ""
    # time.monotonic() by which the DATA checks should be done: a tenth of ScanBudget short
    # of the 451 that ends them, so that the score's rules, stopped there, still give a
    # verdict in time (SpamAssassin's master_deadline); None outside `serve`
    deadline: float | None = None


def time_left(limit: float, deadline: float | None) -> float:
    """Seconds a wait may take: `limit`, or less when `deadline` (time.monotonic()) comes
    first; 0 or below when it has passed. A wait in the DATA checks ends at their deadline
    (decision 0047), so the score still runs and the answer comes before ScanBudget's 451."""
    return limit if deadline is None else min(limit, deadline - time.monotonic())


class Filter:
    """A plugin. Override the stages it cares about; each returns a Decision."""

    name = "filter"
    # Whether a stage of this filter may wait (on DNS, on a database): those stages run on
    # a worker thread; the others run on the event loop, which costs no thread hand-off.
    blocking = False

    def connect(self, tx: Transaction) -> Decision:
        """Before the greeting (tx.peer only); a refusal is sent instead of it. Run again
        after STARTTLS, since the TLS session starts afresh."""
        return CONTINUE

    def helo(self, tx: Transaction) -> Decision:
        """At HELO/EHLO (tx.helo set). Refusing here is rarely kind: qpsmtpd's default, and
        ours, is to check the name here but refuse at MAIL, where the client hears why."""
        return CONTINUE

    def mail(self, tx: Transaction) -> Decision:
        return CONTINUE

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        return CONTINUE

    def data(self, tx: Transaction) -> Decision:
        """May replace tx.data (to add headers); what it leaves there is what is relayed."""
        return CONTINUE

    def finished(self, tx: Transaction, reply: str) -> None:
        """Told the final reply of a transaction: a refusal at MAIL or RCPT, or the reply
        to DATA (karma learns from it)."""


def reject(filter_name: str, reply: str) -> Decision:
    return Decision(Action.REJECT, reply, filter_name)


def tempfail(filter_name: str, reply: str) -> Decision:
    return Decision(Action.TEMPFAIL, reply, filter_name)
