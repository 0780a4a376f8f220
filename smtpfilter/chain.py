"""FilterChain: run the filters of one stage in order until one decides."""

from __future__ import annotations

from smtpfilter.filter import CONTINUE, Action, Decision, Filter, Transaction


class FilterChain:
    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters

    def may_block(self, stage: str) -> bool:
        """Whether a filter that may wait (Filter.blocking) has this stage of its own."""
        return any(plugin.blocking and getattr(type(plugin), stage) is not getattr(Filter, stage)
                   for plugin in self.filters)

    def run(self, stage: str, tx: Transaction, *args: str) -> Decision:
        for plugin in self.filters:
            decision: Decision = getattr(plugin, stage)(tx, *args)
            if decision.action is not Action.CONTINUE:
                return decision
        return CONTINUE

    def finished(self, tx: Transaction, reply: str) -> None:
        for plugin in self.filters:
            plugin.finished(tx, reply)
