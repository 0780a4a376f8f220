"""Evals on what spamkit itself knows: Bayes bands, the lists, basic header presence."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext


def check_bayes(context: MessageContext, low: str, high: str) -> bool:
    """BAYES_xx bands: the Bayes probability is in [low, high) ([low, 1] for the top band)."""
    probability = context.bayes_probability
    if probability is None:
        return False
    low_value, high_value = float(low), float(high)
    if high_value >= 1.0:
        return probability >= low_value
    return low_value <= probability < high_value


def _listed(which: str) -> Callable[..., bool]:
    def check(context: MessageContext, *_: str) -> bool:
        return context.listed == which
    check.__doc__ = f"The sender is on a {which}list (global or the recipient's)."
    return check


def check_for_missing_to_header(context: MessageContext) -> bool:
    return not context.header_values("to") and not context.header_values("apparently-to")


def check_for_no_date(context: MessageContext) -> bool:
    return not context.header_values("date")


def check_for_no_message_id(context: MessageContext) -> bool:
    return not context.header_values("message-id")


def spamkit_fact(context: MessageContext, *facts: str) -> bool:
    """Any of the parser's facts about the message (damage, caps): see spamkit.message."""
    return any(fact in context.message.facts for fact in facts)


EVALS: dict[str, Callable[..., bool]] = {
    "check_bayes": check_bayes,
    "check_from_in_blacklist": _listed("black"),
    "check_from_in_blocklist": _listed("black"),
    "check_for_missing_to_header": check_for_missing_to_header,
    "check_for_no_date": check_for_no_date,
    "check_for_no_message_id": check_for_no_message_id,
    "spamkit_html_only": lambda context: context.html_only,
    "spamkit_fact": spamkit_fact,
}
