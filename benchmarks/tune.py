"""Choosing constants without looking at the test fold: 4-fold cross-validation on folds 1-4.

    python3 -m benchmarks.tune [--grid NAME]

For each tokenizer option set, every training message is tokenized once; for each of
the four training folds a store is built from the other three and the fold is scored
under each Bayes parameter set. The figures (pooled over the four folds, 4,799
messages) are what docs/decisions/ cite. The test fold (0) is never read here.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from spamkit.metrics import accuracy
from corpora.spamassassin import SpamAssassinCorpus, fold_of
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.learn import TRAIN_SELECTION_STRENGTH, Learner
from spamkit.message import message_key, parse_message
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.tokenizer import EmailTokenizer, TokenizerOptions


@dataclasses.dataclass(frozen=True)
class Regime:
    """How the training folds fill the store: every message (`spamkit learn`), or only
    those the store is not yet sure of (`spamkit train`, with its margin and batch)."""

    margin: float | None = None  # None: learn every message
    batch: int = 64  # (the grid below was run with 64 as the default; train's is 256)
    # what train's scoring-to-select uses (the grid's first rows ran with 0.1, then the default)
    selection: BayesParams = BayesParams(minimum_prob_strength=TRAIN_SELECTION_STRENGTH)

    def __str__(self) -> str:
        return "learn all" if self.margin is None else f"train margin {self.margin} batch {self.batch}"


def cross_validate(options: TokenizerOptions, param_sets: Iterable[BayesParams],
                   regime: Regime = Regime()
                   ) -> list[tuple[BayesParams, np.ndarray, np.ndarray, list[str]]]:
    corpus = SpamAssassinCorpus()
    train = [m for m in corpus.messages() if fold_of(m.path) != 0]
    tokenizer = EmailTokenizer(options)
    hashed = [list(tokenizer.tokenize_keys(parse_message(m.data))) for m in train]
    keys = [message_key(m.data) for m in train]
    folds = np.array([fold_of(m.path) for m in train])
    labels = np.array([m.label == "spam" for m in train])
    param_sets = list(param_sets)
    scores = {i: np.zeros(len(train)) for i in range(len(param_sets))}
    verdicts: dict[int, list[str]] = {i: [""] * len(train) for i in range(len(param_sets))}
    for fold in (1, 2, 3, 4):
        with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db", sync=False) as store:
            if regime.margin is None:
                with store.writer() as writer:
                    for index in np.flatnonzero(folds != fold):
                        if writer.learned_as(keys[index]) is not None:
                            continue
                        label = Label.SPAM if labels[index] else Label.HAM
                        writer.add_tokens(hashed[index], label)
                        writer.add_messages(label, 1)
                        writer.remember(keys[index], label)
            else:  # what `spamkit train` runs, on messages already tokenized
                items = {True: [], False: []}
                for index in np.flatnonzero(folds != fold):
                    items[bool(labels[index])].append(
                        SourceItem(train[index].path, train[index].data, token_keys=hashed[index]))
                Learner(store, batch_size=regime.batch).train(
                    items[True], items[False], BayesClassifier(store, regime.selection),
                    regime.margin)
            for p, params in enumerate(param_sets):
                classifier = BayesClassifier(store, params)
                for index in np.flatnonzero(folds == fold):
                    result = classifier.score(hashed[index])
                    scores[p][index] = result.log_odds
                    verdicts[p][index] = result.verdict
    return [(params, labels, scores[p], verdicts[p]) for p, params in enumerate(param_sets)]


def describe(labels: np.ndarray, scores: np.ndarray, verdicts: list[str]) -> str:
    a = accuracy(labels, scores, verdicts)
    ham_top = 1 / (1 + np.exp(-np.sort(scores[~labels])[-3:]))
    cutoffs = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # scores are log-odds: compare with logit(c)
    spam_missed = {c: int((scores[labels] < np.log(c / (1 - c))).sum()) for c in cutoffs}
    ham_caught = {c: int((scores[~labels] >= np.log(c / (1 - c))).sum()) for c in cutoffs}
    return (f"FP {a.false_positives} FN {a.false_negatives} (unsure {a.unsure_spam}, unsure ham "
            f"{a.unsure_ham}) 1-AUC {a.one_minus_auc_percent:.4f}% caught@0FP "
            f"{a.caught_at_zero_fp_percent:.1f}% top ham {np.round(ham_top, 4).tolist()} "
            f"spam below cutoff {spam_missed} ham at or above it {ham_caught}")


GRIDS: dict[str, tuple[list[TokenizerOptions], list[BayesParams]]] = {
    "train": ([TokenizerOptions()], [BayesParams()]),  # run for each of TRAIN_REGIMES
    "bayes2": ([TokenizerOptions(header_set="selected", header_presence=False)], [
        BayesParams(unknown_word_strength=s, minimum_prob_strength=m, max_discriminators=d)
        for s in (0.45, 0.25) for m in (0.1, 0.25) for d in (75, 150, 300)]),
    "bayes": ([TokenizerOptions()], [
        BayesParams(),
        BayesParams(unknown_word_strength=0.1, minimum_prob_strength=0.375, max_discriminators=1000),
        BayesParams(unknown_word_strength=0.1, minimum_prob_strength=0.3, max_discriminators=1000),
        BayesParams(unknown_word_strength=0.2, minimum_prob_strength=0.2, max_discriminators=300),
        BayesParams(unknown_word_strength=0.45, minimum_prob_strength=0.1, max_discriminators=300),
        BayesParams(unknown_word_strength=0.45, minimum_prob_strength=0.1, max_discriminators=50),
    ]),
    "headers": ([TokenizerOptions(), TokenizerOptions(header_set="selected"),
                 TokenizerOptions(header_presence=False),
                 TokenizerOptions(header_set="selected", header_presence=False)],
                [BayesParams(), BayesParams(unknown_word_strength=0.1, minimum_prob_strength=0.375,
                                            max_discriminators=1000)]),
    "tokenizer": ([TokenizerOptions(), TokenizerOptions(words="plain"),
                   TokenizerOptions(fold_case=False), TokenizerOptions(headers=False),
                   TokenizerOptions(pairs=True), TokenizerOptions(invisible=False),
                   TokenizerOptions(html_tags=False)], [BayesParams()]),
}


TRAIN_REGIMES = [Regime(), Regime(0.9), Regime(0.99), Regime(0.999), Regime(0.9999),
                 Regime(0.99, 16), Regime(0.99, 256), Regime(0.999, 16), Regime(0.999, 256)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="bayes")
    args = parser.parse_args(argv)
    options_list, params_list = GRIDS[args.grid]
    regimes = TRAIN_REGIMES if args.grid == "train" else [Regime()]
    for options, regime in ((o, r) for o in options_list for r in regimes):
        for params, labels, scores, verdicts in cross_validate(options, params_list, regime):
            changed = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
                       if getattr(params, f.name) != getattr(BayesParams(), f.name)}
            changed_options = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
                               if getattr(options, f.name) != getattr(TokenizerOptions(), f.name)}
            print(f"{regime}, tokenizer {changed_options or 'default'} bayes {changed or 'default'}: "
                  f"{describe(labels, scores, verdicts)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
