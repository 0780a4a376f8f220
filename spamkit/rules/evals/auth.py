"""SpamAssassin's SPF evals, answered from the Received-SPF header the SMTP filter's `spf`
check writes at the top of the message.

SpamAssassin flags these rules `net` (it looks SPF up itself); spamkit runs them because
the lookup was already made, at the door, by the filter (`RECORDED_RESULT_EVALS`). Only
the topmost Received-SPF header of each identity is read, as SpamAssassin does with
`use_newest_received_spf_header`: that is the one our filter wrote. A message that never
went through it (`spamkit check` of a file) may carry a sender's own header; the worst it
can earn is SPF_PASS's near-zero score, and a forged "fail" only hurts its sender.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_RESULT = re.compile(r"\s*(pass|fail|softfail|neutral|none|permerror|temperror)\b", re.IGNORECASE)
_IDENTITY = re.compile(r"\bidentity\s*=\s*\"?(\w+)", re.IGNORECASE)


def spf_results(context: MessageContext) -> dict[str, str]:
    """{"mailfrom": result, "helo": result} from the topmost header of each identity."""
    cached = context.cache.get("spf")
    if isinstance(cached, dict):
        return cached
    results: dict[str, str] = {}
    for value in context.header_values("received-spf"):
        result = _RESULT.match(value)
        if result is None:
            continue
        identity = _IDENTITY.search(value)
        kind = "helo" if identity is not None and identity.group(1).lower() == "helo" else "mailfrom"
        results.setdefault(kind, result.group(1).lower())
    context.cache["spf"] = results
    return results


def _spf_eval(identity: str, result: str) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        return spf_results(context).get(identity) == result

    check.__doc__ = f"The {identity} identity's SPF result is {result}."
    return check


EVALS: dict[str, Callable[..., bool]] = {}
for _result in ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"):
    EVALS[f"check_for_spf_{_result}"] = _spf_eval("mailfrom", _result)
    EVALS[f"check_for_spf_helo_{_result}"] = _spf_eval("helo", _result)

# Evals of rules SpamAssassin flags `net` whose result the SMTP filter records in the
# message: they run where other network tests are skipped.
RECORDED_RESULT_EVALS = frozenset(EVALS)
