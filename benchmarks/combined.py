"""`python -m benchmarks.combined`: the full verdict (rules + Bayes + lists) on the standard split.

Trains Bayes on folds 1-4 with `spamkit train`'s method (the main job), scores fold 0 with Sensitivity custom and TagLevel 4 (the SME
guide's recipe), and reports false positives and spam caught for Bayes alone (its own
spam verdict), the rules alone, and the combined score.
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


def evaluate(tag_level: float = TAG_LEVEL) -> dict[str, dict[str, int]]:
    corpus = SpamAssassinCorpus()
    _, test = corpus.split()
    config = config_from_text(f"Sensitivity = \"custom\"\nTagLevel = {tag_level}\n"
                              "RejectLevel = 0\nBayesAutoLearn = false\n",
                              Path("benchmark.toml"), {})
    results = {name: {"fp": 0, "fn": 0, "spam": 0, "ham": 0} for name in ("bayes", "rules", "combined")}
    with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db", sync=False) as store:
        train_on_training_folds(store, corpus)
        scanner = Scanner.from_config(config, store)
        rules_only = Scanner.from_config(config, None)
        for message in test:
            is_spam = message.label == "spam"
            combined = scanner.scan(message.data)
            alone = rules_only.scan(message.data)
            calls = {"bayes": combined.bayes is not None and combined.bayes.verdict == "spam",
                     "rules": alone.is_spam, "combined": combined.is_spam}
            for name, called_spam in calls.items():
                row = results[name]
                row["spam" if is_spam else "ham"] += 1
                if called_spam and not is_spam:
                    row["fp"] += 1
                if is_spam and not called_spam:
                    row["fn"] += 1
    return results


def main() -> None:
    for name, row in evaluate().items():
        caught = row["spam"] - row["fn"]
        print(f"{name:>9}: {row['fp']} false positives of {row['ham']} ham, "
              f"{caught} of {row['spam']} spam caught ({100 * caught / row['spam']:.1f}%)")


if __name__ == "__main__":
    main()
