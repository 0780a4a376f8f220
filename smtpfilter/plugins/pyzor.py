"""pyzor: whether Pyzor's users have reported this message as spam (SpamAssassin's Pyzor
plugin, which SME runs inside its spamassassin: the guide's "Pyzor Timeout" section).

The client, the thresholds and the header are spamkit.pyzor's, shared with `spamkit
spamd --pyzor` and `spamkit check --pyzor`. The filter asks the PyzorServers and writes
what it heard in an X-Spamkit-Pyzor header for the rules (PYZOR_CHECK). No server
answering within PyzorTimeout leaves no header: the message goes on, scored without it,
and spamkit_filter_unchecked_total counts it. Mail from LocalNetworks and RelayClients
is not asked about (a digest of our users' mail would go to a public server), nor mail
over MaxMessageSize, which is not scored either. An X-Spamkit-Pyzor that came with the
message is removed, so the header can be trusted. Off unless "pyzor" is in SmtpFilters,
before spamscore.
"""

from __future__ import annotations

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction
from smtpfilter.headers import without_fields
from smtpfilter.metrics import UNCHECKED
from smtpfilter.networks import LocalClients
from spamkit.pyzor import HEADER, PyzorCheck


class Pyzor(Filter):
    name = "pyzor"
    blocking = True  # waits on the servers

    def __init__(self, check: PyzorCheck, local: LocalClients) -> None:
        self.check = check
        self.local = local

    def data(self, tx: Transaction) -> Decision:
        tx.data = without_fields(tx.data, HEADER.lower(), lambda value: True)
        if self.local.holds(tx):
            return CONTINUE
        digest = self.check.digest(tx.data)
        if digest is None:
            return CONTINUE
        answer = self.check.client.check(digest)
        if answer is None:
            UNCHECKED.count(self.name, "unanswered")
            return CONTINUE
        tx.data = f"{HEADER}: {self.check.header_value(answer)}\r\n".encode() + tx.data
        return CONTINUE
