"""`python -m benchmarks.retune --grid constants|tokenizer`: Bayes's constants and the
tokenizer's options, measured again with the byte model's vote added.

They were chosen for Bayes alone (decisions 0002 and 0003, `benchmarks.tune`). The
verdict now reads Bayes's log-odds plus the byte model's (0024), so a constant that
mattered alone may matter less, or otherwise, in the sum. Same harness as
`benchmarks.byte_readings`: folds 1-4 over many training orders, `train` filling each
store as shipped, the byte model (bm2, shipped settings) replayed over the same folds in
the same order and added with BIAS. Fold 0 is never read.

Each row gives the sum's figures (as in byte_readings: FP and misses at the 0.9 cutoff,
misses at 0-3 false positives, 1-AUC %), the 1-AUC of each half of the orders (with 16,
salts 0-7 and 8-15: the spread), and Bayes alone's FP, misses and 1-AUC.
`--grid constants` scores each training run under every set of constants (`train`'s
own selection is unchanged); `--grid tokenizer` tokenizes and trains again per option.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

from benchmarks.byte_readings import (Message, Runs, bayes_runs, figures, model_votes, order_figures,
                                      read_folds)
from spamkit.analysis import Analyzer
from spamkit.bayes import BayesParams
from spamkit.bytemodel import FORMAT, READINGS
from spamkit.tokenizer import EmailTokenizer, TokenizerOptions

CONSTANTS = [BayesParams(unknown_word_strength=s, minimum_prob_strength=m, max_discriminators=d)
             for s, m, d in itertools.product((0.25, 0.45, 0.7), (0.2, 0.25, 0.35), (75, 150, 300))]
OPTIONS = [TokenizerOptions(), TokenizerOptions(header_presence=True),
           TokenizerOptions(header_set="all"), TokenizerOptions(invisible=False),
           TokenizerOptions(html_tags=True), TokenizerOptions(pairs=True)]


def changed(value: object) -> str:
    """What differs from the default, as name=value (or "shipped")."""
    default = type(value)()
    names = [f.name for f in dataclasses.fields(value)  # type: ignore[arg-type]
             if getattr(value, f.name) != getattr(default, f.name)]
    return ", ".join(f"{name}={getattr(value, name)}" for name in names) or "shipped"


def row(name: str, messages: list[Message], runs: Runs, votes: Runs) -> str:
    """The sum's figures, its 1-AUC on each half of the orders, and Bayes alone's."""
    salts = sorted({salt for salt, _ in runs})
    halves = [salts[:len(salts) // 2], salts[len(salts) // 2:]]
    spread = " / ".join(
        f"{order_figures(messages, {k: v for k, v in runs.items() if k[0] in half}, votes)[:, 6].mean():.4f}"
        for half in halves if half)
    alone = order_figures(messages, runs, None).mean(axis=0)
    return (f"| {name} | {figures(messages, runs, votes)} | {spread} | "
            f"{alone[0]:.2f} / {alone[1]:.1f} / {alone[6]:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("constants", "tokenizer"), required=True)
    parser.add_argument("--orders", type=int, default=16, help="training orders (salts 0..N-1)")
    args = parser.parse_args(argv)
    messages = read_folds()
    salts = range(args.orders)
    print(f"Folds 1-4, {args.orders} training orders, byte model {FORMAT} added with its BIAS\n")
    print("| setting | FP at 0.9 | misses at 0.9 | misses at FP=0 / 1 / 2 / 3 | 1-AUC % | "
          "1-AUC, first / second half of the orders | Bayes alone: FP / misses / 1-AUC % |")
    print("|---|---:|---:|---|---:|---|---|")
    votes: Runs | None = None
    if args.grid == "constants":
        shipped = BayesParams()
        param_sets = [shipped] + [p for p in CONSTANTS if p != shipped]
        for params, runs in zip(param_sets, bayes_runs(messages, salts, param_sets)):
            votes = votes or model_votes(messages, READINGS[FORMAT], runs)
            print(row(changed(params), messages, runs, votes), flush=True)
    else:
        for options in OPTIONS:
            analyzer = Analyzer(EmailTokenizer(options))
            keys = [analyzer.analyze(m.raw).hashes for m in messages]
            runs = bayes_runs(messages, salts, token_keys=keys)[0]
            votes = votes or model_votes(messages, READINGS[FORMAT], runs)
            print(row(changed(options), messages, runs, votes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
