"""`python -m benchmarks.byte_readings`: what the byte model should read of a message,
measured in cross-validation on folds 1-4 over many training orders (decision 0024, "bm2").

`train` is sensitive to the order it meets the mail in, so one cross-validation is one
sample of orders. Here every order (a salt mixed into the message keys `train` sorts by)
gets its own Bayes `train` run for each held-out fold, with the byte model left out of
the scores; then each reading's byte model is replayed with `ByteModel.learn` over the
same three folds in the same order (every message, as `train` shows it every message)
and its log-odds added to Bayes's with BIAS. Fold 0 is never read.

Each row: the mean over the orders of the false positives and misses at the 0.9 cutoff
(the range of the false positives in brackets), the misses at 0-3 false positives (spam
at or below the 1st-4th highest ham, which the bias does not move) and 1-AUC %.
Bayes's runs are cached in --workdir (about 17 s for 8 orders).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from corpora.spamassassin import SpamAssassinCorpus, fold_of
from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.bytemodel import (BIAS, COPIES, FORMAT, READINGS, ByteModel, Reading, bagged_steps,
                               byte_sample, grams)
from spamkit.learn import Learner, train_selector
from spamkit.message import message_key
from spamkit.metrics import auc
from spamkit.sources import SourceItem
from spamkit.store import LmdbStore

FOLDS = (1, 2, 3, 4)
SPAM_LOG_ODDS = math.log(0.9 / 0.1)  # the 0.9 spam cutoff
# the readings of decision 0024's "bm2" table that `byte_sample` can express
CANDIDATES: dict[str, Reading] = {
    "bm1: first 3,000": READINGS["bm1"],
    "first 3,000, lower case": Reading(3_000, 0, True),
    "first 3,000 + last 1,000": Reading(3_000, 1_000, False),
    "first 3,000 + last 1,000, lower case": Reading(3_000, 1_000, True),
    "first 1,500 + last 1,000, lower case": Reading(1_500, 1_000, True),
    "bm2: first 2,000 + last 1,000, lower case": READINGS["bm2"],
    "first 2,500 + last 1,000, lower case": Reading(2_500, 1_000, True),
    "first 2,000 + last 2,000, lower case": Reading(2_000, 2_000, True),
}


@dataclass
class Message:
    spam: bool
    fold: int
    key: bytes
    token_keys: list[bytes]
    raw: bytes


def read_folds() -> list[Message]:
    analyzer = Analyzer()
    return [Message(m.label == "spam", fold_of(m.path), message_key(m.data),
                    analyzer.analyze(m.data).hashes, m.data)
            for m in SpamAssassinCorpus().messages(folds=set(FOLDS))]


def salted(key: bytes, salt: int) -> bytes:
    """The message key an order sorts by: the same content always lands in the same place
    of one order, and in unrelated places of two."""
    return hashlib.blake2b(bytes([salt]) + key, digest_size=len(key)).digest()


Runs = dict[tuple[int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


def bayes_runs(messages: list[Message], salts: range,
               param_sets: Sequence[BayesParams] = (BayesParams(),),
               token_keys: Sequence[list[bytes]] | None = None) -> list[Runs]:
    """For each of `param_sets`: (salt, held-out fold) -> (its messages' indexes, Bayes's
    chi-square log-odds scored with those constants). `train` fills each store as shipped
    (its selection does not depend on `param_sets`); `token_keys`, when given, stand in
    for the messages' own (another tokenizer's)."""
    keys = token_keys or [m.token_keys for m in messages]
    runs: list[Runs] = [{} for _ in param_sets]
    for salt in salts:
        for fold in FOLDS:
            items = {spam: [SourceItem(str(i), m.raw, key=salted(m.key, salt), token_keys=keys[i])
                            for i, m in enumerate(messages) if m.fold != fold and m.spam is spam]
                     for spam in (True, False)}
            held_out = np.array([i for i, m in enumerate(messages) if m.fold == fold])
            with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db", sync=False) as store:
                Learner(store).train(items[True], items[False], train_selector(store))
                for params, params_runs in zip(param_sets, runs):
                    results = BayesClassifier(store, params).score_many([keys[i] for i in held_out])
                    params_runs[salt, fold] = held_out, np.array([r.log_odds for r in results])
    return runs


def model_votes(messages: list[Message], reading: Reading, runs: Runs, copies: int = COPIES) -> Runs:
    """The byte model's log-odds on each held-out fold, learned as `train` teaches it: the
    mean of `copies` copies (`bagged_steps`; 1: one model, learning in `train`'s order)."""
    samples = [byte_sample(m.raw, reading) for m in messages]
    votes: Runs = {}
    for salt, fold in runs:
        model = ByteModel(model_format=FORMAT)  # (it is given samples in `reading` only)
        order = sorted((i for i, m in enumerate(messages) if m.fold != fold),
                       key=lambda i: salted(messages[i].key, salt))
        steps = bagged_steps(model, [salted(messages[i].key, salt) for i in order],
                             [samples[i] for i in order], [messages[i].spam for i in order], copies)
        model.add_steps([samples[i] for i in order], steps)
        held_out = runs[salt, fold][0]
        votes[salt, fold] = held_out, np.array([model.log_odds(grams(samples[i])) for i in held_out])
    return votes


def order_figures(messages: list[Message], runs: Runs, votes: Runs | None) -> npt.NDArray[np.float64]:
    """One row per order, each order's folds pooled: FP and misses at the 0.9 cutoff, the
    misses at 0-3 false positives, 1-AUC %. With `votes`, the byte model's log-odds and
    BIAS are added to Bayes's."""
    labels = np.array([m.spam for m in messages])
    per_order = []
    for salt in sorted({salt for salt, _ in runs}):
        indexes = np.concatenate([runs[salt, fold][0] for fold in FOLDS])
        scores = np.concatenate([runs[salt, fold][1] + (votes[salt, fold][1] + BIAS if votes else 0.0)
                                 for fold in FOLDS])
        spam, ham = scores[labels[indexes]], np.sort(scores[~labels[indexes]])[::-1]
        per_order.append([int((ham >= SPAM_LOG_ODDS).sum()), int((spam < SPAM_LOG_ODDS).sum()),
                          *[int((spam <= ham[k]).sum()) for k in range(4)],
                          100 * (1 - auc(labels[indexes], scores))])
    return np.array(per_order, dtype=float)


def figures(messages: list[Message], runs: Runs, votes: Runs | None) -> str:
    """The row's figures, averaged over the orders (the range of the false positives in
    brackets)."""
    table = order_figures(messages, runs, votes)
    mean = table.mean(axis=0)
    frontier = " / ".join(f"{value:.1f}" for value in mean[2:6])
    return (f"{mean[0]:.2f} [{table[:, 0].min():.0f}-{table[:, 0].max():.0f}] | {mean[1]:.1f} | "
            f"{frontier} | {mean[6]:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=16, help="training orders (salts 0..N-1)")
    parser.add_argument("--copies", type=int, default=COPIES,
                        help="copies of the model `train` averages (1: one model, as before bagging)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/spamkit-byte-readings"),
                        help="where Bayes's runs are cached between invocations")
    args = parser.parse_args(argv)
    messages = read_folds()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = args.workdir / f"bayes-{args.orders}.pickle"
    if cache.exists():
        runs: Runs = pickle.loads(cache.read_bytes())
    else:
        runs = bayes_runs(messages, range(args.orders))[0]
        cache.write_bytes(pickle.dumps(runs))
    print(f"Folds 1-4, {args.orders} training orders, BIAS {BIAS:.2f}, {args.copies} copies of the model\n")
    print("| what the model reads | FP at 0.9 | misses at 0.9 | misses at FP=0 / 1 / 2 / 3 | 1-AUC % |")
    print("|---|---:|---:|---|---:|")
    print(f"| Bayes alone | {figures(messages, runs, None)} |", flush=True)
    for name, reading in CANDIDATES.items():
        print(f"| {name} | {figures(messages, runs, model_votes(messages, reading, runs, args.copies))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
