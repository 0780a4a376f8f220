"""FilterChain: run the filters of one stage in order until one decides."""

from __future__ import annotations

import logging

from smtpfilter.filter import CONTINUE, Action, Decision, Filter, Transaction

log = logging.getLogger("spamkit.smtpfilter")
WOULD_REFUSE = "would_refuse"  # the note of refusals kept back after the queue (SmtpAfterQueue)
WOULD_REFUSE_BY = "would_refuse_by"  # the filters that made them, for the metrics


class FilterChain:
    def __init__(self, filters: list[Filter], refuse: bool = True) -> None:
        self.filters = filters
        # After the MTA's queue (SmtpAfterQueue), a refusal for good would be the MTA's
        # bounce to a sender who is usually forged (backscatter): the chain then keeps
        # each 5xx back as a note, the handler writes it into the message, and the
        # filters after it still run. Temporary refusals (4xx) stand: the MTA retries.
        self.refuse = refuse
        # the stages where a filter that may wait (Filter.blocking) has a method of its
        # own: worked out once, asked at every HELO, MAIL and RCPT
        self._blocking_stages = {
            stage for stage in ("connect", "helo", "mail", "rcpt", "data")
            if any(plugin.blocking and getattr(type(plugin), stage) is not getattr(Filter, stage)
                   for plugin in filters)}

    def may_block(self, stage: str) -> bool:
        return stage in self._blocking_stages

    def run(self, stage: str, tx: Transaction, *args: str) -> Decision:
        for plugin in self.filters:
            decision: Decision = getattr(plugin, stage)(tx, *args)
            if decision.action is Action.REJECT and not self.refuse:
                self._keep_back(stage, tx, decision, *args)
                continue
            if decision.action is not Action.CONTINUE:
                return decision
        return CONTINUE

    def _keep_back(self, stage: str, tx: Transaction, decision: Decision, *args: str) -> None:
        where = f"{decision.filter or 'a filter'}, at {stage.upper()}" + (f" for <{args[0]}>" if args else "")
        kept: list[str] = tx.notes.setdefault(WOULD_REFUSE, [])  # type: ignore[assignment]
        kept.append(f"{decision.reply} ({where})")
        refusers: list[str] = tx.notes.setdefault(WOULD_REFUSE_BY, [])  # type: ignore[assignment]
        refusers.append(decision.filter or "-")
        log.info("client=%s stage=%s would_refuse=%r by=%s: after the queue, passed on marked",
                 tx.peer, stage, decision.reply[:3], decision.filter or "-")

    def finished(self, tx: Transaction, reply: str) -> None:
        for plugin in self.filters:
            plugin.finished(tx, reply)
