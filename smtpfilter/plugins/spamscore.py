"""spamscore: the engine's verdict. TagLevel headers and subject tag, RejectLevel 5xx.

Mail larger than MaxMessageSize passes unscanned with a header saying so, and is never
counted as ham (nor learned).
"""

from __future__ import annotations

import logging

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from spamkit.verdict import Scanner, Verdict

log = logging.getLogger("spamkit.smtpfilter")


class SpamScore(Filter):
    name = "spamscore"

    def __init__(self, scanner: Scanner, autolearn: bool = False) -> None:
        self.scanner = scanner
        self.autolearn = autolearn

    def data(self, tx: Transaction) -> Decision:
        limit = self.scanner.config["MaxMessageSize"]
        if len(tx.data) > limit:
            tx.data = (f"X-Spam-Status: unscanned, larger than MaxMessageSize ({limit})\r\n".encode()
                       + tx.data)
            tx.notes["score"] = "unscanned"
            tx.notes["spam"] = "unscanned"  # karma counts it neither way
            return CONTINUE
        earlier = tx.notes.get("parsed")  # (data, ParsedMessage) from a filter before us
        parsed = earlier[1] if isinstance(earlier, tuple) and earlier[0] is tx.data else None
        verdict = self.scanner.scan(tx.data, tx.mail_from or None, tuple(tx.rcpt_tos), parsed=parsed)
        tx.notes["score"] = f"{verdict.score:.1f}"
        tx.notes["spam"] = "yes" if verdict.is_spam else "no"
        if self.autolearn:
            self._autolearn(tx, verdict)
        if verdict.decision == "reject":
            return reject(self.name, f"550 5.7.1 Message rejected as spam (score {verdict.score:.1f})")
        tx.data = verdict.rewrite(tx.data)
        return CONTINUE

    def _autolearn(self, tx: Transaction, verdict: Verdict) -> None:
        """Learn what autolearn picked; a failed write (a full disk) is logged, and the
        message goes on with its verdict (Scanner.autolearn marks it autolearn=failed)."""
        if self.scanner.autolearn(tx.data, verdict, f"smtp:{tx.peer}") == "failed":
            log.warning("autolearn failed for a message from %s: %s", tx.peer, verdict.autolearn_reason)
