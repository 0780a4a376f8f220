"""check_pyzor (SpamAssassin's PYZOR_CHECK): what the SMTP filter's pyzor check recorded in
the message. The rule runs where network tests are skipped, as the SPF, DKIM and DMARC
evals do: the lookup was made once, by the filter (smtpfilter/plugins/pyzor.py), and a
message it never saw (`spamkit check` of a file) has no such header and no hit.
"""

from __future__ import annotations

from collections.abc import Callable

from spamkit.rules.context import MessageContext

HEADER = "X-Spamkit-Pyzor"
LISTED = "listed"  # the header's first word when the thresholds call the message listed


def check_pyzor(context: MessageContext) -> bool:
    """The topmost X-Spamkit-Pyzor says listed (the filter removed any that came with the
    message before it wrote its own)."""
    values = context.header_values(HEADER)
    return bool(values) and values[0].strip().split(",", 1)[0] == LISTED


EVALS: dict[str, Callable[..., bool]] = {"check_pyzor": check_pyzor}
