"""`python -m benchmarks.crossval`: every tool through the same 4-fold cross-validation.

The test fold (0) is one sample of 1,247 messages; a handful of messages decide its
false-negative and 1-AUC figures. This runs the tools of benchmarks.run the same way
(their own commands, one process each) on the training folds only: for each of folds
1-4, train on the other three and score it, then pool the four folds (4,799 messages,
1,502 spam and 3,297 ham). Fold 0 is never read, so these figures can choose between
configurations and still leave the test fold an honest test. Speed is not measured here.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from spamkit.metrics import Accuracy, accuracy
from benchmarks.tools import TOOLS, Tool, ensure_installed
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus

FOLDS = (1, 2, 3, 4)


@dataclass
class Pooled:
    """One tool's scores and verdicts over all folds, and its errors fold by fold."""

    labels: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    per_fold: dict[int, Accuracy] = field(default_factory=dict)


def cross_validate(tool_classes: list[type[Tool]], workdir: Path,
                   corpus: SpamAssassinCorpus | None = None) -> dict[str, Pooled]:
    corpus = corpus or SpamAssassinCorpus()
    pooled = {tool_class.name: Pooled() for tool_class in tool_classes}
    for fold in FOLDS:
        split_dir = workdir / f"fold{fold}"
        if split_dir.exists():
            shutil.rmtree(split_dir)
        corpus.write_split(split_dir, test_fold=fold, leave_out=(TEST_FOLD,))
        spam_dir, ham_dir = split_dir / "train" / "spam", split_dir / "train" / "ham"
        test = sorted((split_dir / "test" / "spam").iterdir()) + sorted((split_dir / "test" / "ham").iterdir())
        labels = [path.parent.name == "spam" for path in test]
        for tool_class in tool_classes:
            print(f"fold {fold}: {tool_class.name} ...", file=sys.stderr, flush=True)
            tool = tool_class(workdir / "tools")
            tool.learn(sorted(spam_dir.iterdir()), sorted(ham_dir.iterdir()), spam_dir, ham_dir)
            _, scores, verdicts = tool.check(test, split_dir / "test")
            row = pooled[tool_class.name]
            row.labels += labels
            row.scores += scores
            row.verdicts += verdicts
            row.per_fold[fold] = accuracy(labels, scores, verdicts)
        shutil.rmtree(split_dir)
    return pooled


def render(pooled: dict[str, Pooled]) -> str:
    header = ("| tool | FP | FN (of which unsure) | 1-AUC % | caught at 0 FP | "
              + " | ".join(f"fold {f} FP / FN" for f in FOLDS) + " |")
    lines = [header, "|---|---:|---:|---:|---:|" + "---:|" * len(FOLDS)]
    for name, row in pooled.items():
        a = accuracy(row.labels, row.scores, row.verdicts)
        folds = " | ".join(f"{row.per_fold[f].false_positives} / {row.per_fold[f].false_negatives}"
                           for f in FOLDS)
        lines.append(f"| {name} | {a.false_positives} | {a.false_negatives} ({a.unsure_spam}) | "
                     f"{a.one_minus_auc_percent:.4f} | {a.caught_at_zero_fp_percent:.1f}% | {folds} |")
    spam = sum(next(iter(pooled.values())).labels) if pooled else 0
    total = len(next(iter(pooled.values())).labels) if pooled else 0
    return (f"Pooled over folds 1-4 ({spam} spam, {total - spam} ham), each fold scored by a "
            f"database trained on the other three:\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default="spamkit,spamkit-learn-all,bogofilter,spamprobe")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    tool_classes = [TOOLS[name] for name in args.tools.split(",")]
    ensure_installed(tool_classes)
    with tempfile.TemporaryDirectory(prefix="spamkit-crossval-") as scratch:
        print(render(cross_validate(tool_classes, args.workdir or Path(scratch))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
