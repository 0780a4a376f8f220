"""`python -m benchmarks.combined`: the full verdict (rules + Bayes + lists) on the standard split.

Trains Bayes on folds 1-4 with `spamkit train`'s method (the main job), scores fold 0, and
reports false positives and spam caught for Bayes alone (its own spam verdict), the rules
alone and the combined score at the SME guide's recipe (Sensitivity custom, TagLevel 4),
and the combined score at the default Sensitivity (medium: level 5).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.training import train_on_training_folds
from corpora.spamassassin import SpamAssassinCorpus
from spamkit.config import config_from_text
from spamkit.store import LmdbStore
from spamkit.verdict import Scanner

TAG_LEVEL = 4.0
GUIDE = f"Sensitivity = \"custom\"\nTagLevel = {TAG_LEVEL}\nRejectLevel = 0\nBayesAutoLearn = false\n"
DEFAULT = "BayesAutoLearn = false\n"  # Sensitivity medium, no rejection
ROWS = {"bayes": "bayes", "rules": "rules (TagLevel 4)", "combined": "combined (TagLevel 4)",
        "default": "combined (Sensitivity medium, 5: the default)"}


def evaluate() -> dict[str, dict[str, int]]:
    """False positives and misses of each row of ROWS, by its label there."""
    corpus = SpamAssassinCorpus()
    _, test = corpus.split()
    guide = config_from_text(GUIDE, Path("benchmark.toml"), {})
    default = config_from_text(DEFAULT, Path("benchmark.toml"), {})
    results = {label: {"fp": 0, "fn": 0, "spam": 0, "ham": 0} for label in ROWS.values()}
    with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db", sync=False) as store:
        train_on_training_folds(store, corpus)
        scanner = Scanner.from_config(guide, store)
        at_default = Scanner.from_config(default, store)
        rules_only = Scanner.from_config(guide, None)
        for message in test:
            is_spam = message.label == "spam"
            combined = scanner.scan(message.data)
            alone = rules_only.scan(message.data)
            calls = {"bayes": combined.bayes is not None and combined.bayes.verdict == "spam",
                     "rules": alone.is_spam, "combined": combined.is_spam,
                     "default": at_default.scan(message.data).is_spam}
            for name, called_spam in calls.items():
                row = results[ROWS[name]]
                row["spam" if is_spam else "ham"] += 1
                if called_spam and not is_spam:
                    row["fp"] += 1
                if is_spam and not called_spam:
                    row["fn"] += 1
    return results


def main() -> None:
    for name, row in evaluate().items():
        caught = row["spam"] - row["fn"]
        print(f"{name}: {row['fp']} false positives of {row['ham']} ham, "
              f"{caught} of {row['spam']} spam caught ({100 * caught / row['spam']:.1f}%)")


if __name__ == "__main__":
    main()
