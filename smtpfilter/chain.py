"""FilterChain: run the filters of one stage in order until one decides."""

from __future__ import annotations

from smtpfilter.filter import CONTINUE, Action, Decision, Filter, Transaction


class FilterChain:
    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters
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
            if decision.action is not Action.CONTINUE:
                return decision
        return CONTINUE

    def finished(self, tx: Transaction, reply: str) -> None:
        for plugin in self.filters:
            plugin.finished(tx, reply)
