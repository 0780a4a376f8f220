"""The `eval:` tests spamkit implements. Rules calling any other eval are skipped at load.

Each eval takes the message context and the rule's arguments (as strings) and returns
whether the rule hits. An eval that handles only some of SpamAssassin's arguments says
which in an `accepts(args)` attribute; a rule with other arguments is skipped at load
and counted, never run with a guess.
"""

from __future__ import annotations

from collections.abc import Callable

from spamkit.rules.evals import (auth, basic, faraway, freemail, headers, htmleval, imageinfo, mime, pyzor, received,
                                 wlbl)

# Evals of rules SpamAssassin flags `net` whose result the SMTP filter records in the
# message: they run where other network tests are skipped
RECORDED_RESULT_EVALS = frozenset(auth.EVALS) | frozenset(pyzor.EVALS)

EVALS: dict[str, Callable[..., bool]] = {
    **basic.EVALS,
    **headers.EVALS,
    **received.EVALS,
    **mime.EVALS,
    **htmleval.EVALS,
    **imageinfo.EVALS,
    **freemail.EVALS,
    **auth.EVALS,
    **pyzor.EVALS,
    **wlbl.EVALS,
    **faraway.EVALS,
}


def supported(name: str, args: tuple[str, ...]) -> bool:
    """Whether spamkit runs eval `name` with these arguments."""
    function = EVALS.get(name)
    if function is None:
        return False
    accepts = getattr(function, "accepts", None)
    return accepts is None or bool(accepts(args))


__all__ = ["EVALS", "RECORDED_RESULT_EVALS", "supported"]
