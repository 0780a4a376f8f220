"""spamscore: the engine's verdict. TagLevel headers and subject tag, RejectLevel 5xx.

Mail larger than MaxMessageSize passes unscanned with a header saying so, and is never
counted as ham (nor learned). When the token database cannot be used (a shared Redis that
is down, a file found damaged: spamkit/store/watch.py), WhenDatabaseDown decides: 451 (the
default), the rules alone, or relayed unscanned with a header saying so.

With ScanLocalClients false, as on SME, our own clients' mail is not scored at all.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import cast

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject, tempfail
from smtpfilter.metrics import UNCHECKED
from smtpfilter.networks import LocalClients
from spamkit.errors import StoreError
from spamkit.rules.context import Verified
from spamkit.verdict import Scanner, Verdict, unscanned

log = logging.getLogger("spamkit.smtpfilter")


class SpamScore(Filter):
    name = "spamscore"

    def __init__(self, scanner: Scanner, autolearn: bool = False, spared: LocalClients | None = None) -> None:
        self.scanner = scanner
        self.autolearn = autolearn
        self.spared = spared  # clients whose mail is not scored (ScanLocalClients false)
        self._warned = False

    def data(self, tx: Transaction) -> Decision:
        if self.spared is not None and self.spared.holds(tx):
            if not tx.named_by and ipaddress.ip_address(tx.peer).is_loopback and not self._warned:
                self._warned = True
                log.warning("spamscore: mail from %s, with no XFORWARD naming another client, goes "
                            "on unscored (ScanLocalClients = false). If an MTA in front relays "
                            "mail from outside through this filter, have it send XFORWARD "
                            "(smtp_send_xforward_command = yes) or set ScanLocalClients = true, "
                            "else no mail is scored. (Said once.)", tx.peer)
            return CONTINUE  # (no score: karma counts it neither way; it spares these anyway)
        limit = self.scanner.config["MaxMessageSize"]
        if len(tx.data) > limit:
            tx.data = unscanned(tx.data, f"larger than MaxMessageSize ({limit})")
            tx.notes["score"] = "unscanned"
            tx.notes["spam"] = "unscanned"  # karma counts it neither way
            UNCHECKED.count(self.name, "size")
            return CONTINUE
        earlier = tx.notes.get("parsed")  # (data, ParsedMessage) from a filter before us
        parsed = earlier[1] if isinstance(earlier, tuple) and earlier[0] is tx.data else None
        verified = verified_at_the_door(tx)
        try:
            verdict = self.scanner.scan(tx.data, tx.mail_from or None, tuple(tx.rcpt_tos), parsed=parsed,
                                        deadline=tx.deadline, verified=verified)
            database_down = False
        except StoreError as error:  # (unreachable, or damage LMDB noticed as it read)
            policy = self.scanner.config["WhenDatabaseDown"]
            log.warning("token database unavailable (WhenDatabaseDown=%s): %s", policy, error)
            UNCHECKED.count(self.name, "database")
            if policy == "tempfail":
                return tempfail(self.name, "451 4.3.0 Spam database unavailable, try again later")
            if policy == "unscanned":
                tx.data = unscanned(tx.data, "spam database unavailable")
                tx.notes["score"] = tx.notes["spam"] = "unscanned"
                return CONTINUE
            verdict = self.scanner.scan(tx.data, tx.mail_from or None, tuple(tx.rcpt_tos),
                                        parsed=parsed, with_bayes=False, deadline=tx.deadline,
                                        verified=verified)
            verdict.autolearn, verdict.autolearn_reason = "unavailable", str(error)
            database_down = True
        tx.notes["score"] = f"{verdict.score:.1f}"
        tx.notes["spam"] = "yes" if verdict.is_spam else "no"
        if self.autolearn and not database_down:
            self._autolearn(tx, verdict)
        elif not self.autolearn:
            verdict.not_learned_here("the filter does not learn (serve --autolearn would)")
        tx.data = verdict.rewrite(tx.data)  # (a refusal after the queue goes on so marked)
        if verdict.decision == "reject":
            return reject(self.name, f"550 5.7.1 Message rejected as spam (score {verdict.score:.1f})")
        return CONTINUE

    def _autolearn(self, tx: Transaction, verdict: Verdict) -> None:
        """Learn what autolearn picked; a failed write (a full disk) is logged, and the
        message goes on with its verdict (Scanner.autolearn marks it autolearn=failed)."""
        if self.scanner.autolearn(tx.data, verdict, f"smtp:{tx.peer}") == "failed":
            log.warning("autolearn failed for a message from %s: %s", tx.peer, verdict.autolearn_reason)


def verified_at_the_door(tx: Transaction) -> Verified | None:
    """What the spf and dkim filters before this one found (their notes), for the rules'
    welcomelist evals; None when neither ran on this message (a local client's, say)."""
    spf = tx.notes.get("spf")
    dkim = tx.notes.get("dkim")
    if spf is None and dkim is None:
        return None
    results = cast("list[tuple[str, str, str]]", dkim or [])  # (result, domain, selector)
    # each signature's identity domain (i=, else d=), as SpamAssassin's DKIM welcomelists
    # compare it; d= where the dkim stage noted none (a chain that ran another one)
    identities = cast("list[str]", tx.notes.get("dkim_identities") or [domain for _, domain, _ in results])
    passing = tuple(dict.fromkeys(identity.lower() for (result, _, _), identity in zip(results, identities)
                                  if result == "pass" and identity))
    return Verified(spf=str(spf) if spf is not None else None, dkim_domains=passing)
