"""`python -m benchmarks.store`: the store's share of learning, without parsing or tokenizing.

Tokenizes the 4,799 training messages once, then times learning them from their
hashes in batches of 1,000 (learned-once checks, token updates, fsynced commits).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from corpora.spamassassin import SpamAssassinCorpus, fold_of
from spamkit.message import message_key, parse_message
from spamkit.store import Label, LmdbStore
from spamkit.tokenizer import EmailTokenizer

BATCH = 1000


def main() -> None:
    messages = [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) != 0]
    tokenizer = EmailTokenizer()
    hashes = [list(tokenizer.tokenize_keys(parse_message(m.data))) for m in messages]
    keys = [message_key(m.data) for m in messages]
    labels = [Label(m.label) for m in messages]
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db") as store:
            started = time.perf_counter()
            for start in range(0, len(messages), BATCH):
                with store.writer() as writer:
                    for i in range(start, min(start + BATCH, len(messages))):
                        if writer.learned_as(keys[i]) is None:
                            writer.add_tokens(hashes[i], labels[i])
                            writer.add_messages(labels[i], 1)
                            writer.remember(keys[i], labels[i])
            best = min(best, time.perf_counter() - started)
    print(f"store work per message learned: {best / len(messages) * 1e6:.0f} µs (best of 3)")


if __name__ == "__main__":
    main()
