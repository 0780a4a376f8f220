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
from smtpfilter.metrics import UNCHECKED
from smtpfilter.networks import LocalClients
from spamkit.pyzor import PyzorCheck


class Pyzor(Filter):
    name = "pyzor"
    blocking = True  # waits on the servers

    def __init__(self, check: PyzorCheck, local: LocalClients) -> None:
        self.check = check
        self.local = local

    def data(self, tx: Transaction) -> Decision:
        # the sender's X-Spamkit-Pyzor goes either way; only strangers' mail is asked about
        recorded = self.check.recorded(tx.data, ask=not self.local.holds(tx))
        tx.data = recorded.data
        if recorded.asked and recorded.answer is None:
            UNCHECKED.count(self.name, "unanswered")
        return CONTINUE
