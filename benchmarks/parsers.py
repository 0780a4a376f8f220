"""`python -m benchmarks.parsers`: our parser against the standard library's `email` on the corpus.

Both do the same work: headers, every part's payload decoded, text decoded with its
charset. (HTML rendering is left out of both for the comparison.) mail-parser is timed
too when installed. Figures go to docs/decisions/0001-message-parser.md.
"""

from __future__ import annotations

import email
import logging
import email.policy
import time

from corpora.spamassassin import SpamAssassinCorpus
from spamkit.message import parse_message
from spamkit.message.decode import decode_text


def stdlib_parse(raw: bytes) -> int:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    chars = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_content_maintype() == "text":
            chars += len(decode_text(payload, part.get_content_charset()))
    return chars


def main() -> None:
    messages = [m.data for m in SpamAssassinCorpus().messages()]
    candidates = {"spamkit.message.parse_message (with HTML rendering)": parse_message,
                  "email, policy=compat32, walk + decode": stdlib_parse}
    try:
        logging.disable(logging.WARNING)  # mail-parser logs every part type it skips
        import mailparser  # type: ignore[import-untyped]

        candidates["mail-parser parse_from_bytes"] = mailparser.parse_from_bytes
    except ImportError:
        pass
    for name, function in candidates.items():
        best = float("inf")
        failures = 0
        for _ in range(2):
            started = time.perf_counter()
            for raw in messages:
                try:
                    function(raw)
                except Exception:
                    failures += 1
            best = min(best, time.perf_counter() - started)
        print(f"{name}: {len(messages) / best:,.0f} messages/s, {failures // 2} raised")


if __name__ == "__main__":
    main()
