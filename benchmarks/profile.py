"""Where spamkit's time goes: each stage of learning and checking, timed in-process.

`python -m benchmarks.profile` prints the table; benchmarks.run puts it in RESULTS.md.
"""

from __future__ import annotations

import gc
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import installed
from corpora.spamassassin import SpamAssassinCorpus, fold_of
from spamkit.bayes import BayesClassifier, chi2_combine, token_probabilities
from spamkit.cli import batch_gc
from spamkit.cli.check import BATCH_MESSAGES
from spamkit.learn import Learner
from spamkit.message import message_key, parse_message
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.tokenizer import HAVE_C_CORE, EmailTokenizer, hash_tokens


BATCHED = f"store lookups in batches of {BATCH_MESSAGES}, per message"
WHOLE_BATCHED = f"lookups + probabilities + chi-square in batches of {BATCH_MESSAGES} (what check runs)"


def profile_stages(corpus: SpamAssassinCorpus | None = None) -> str:
    """Each stage timed with the garbage collector tuned as the commands tune it
    (spamkit.cli.batch_gc): with its defaults, the parsed corpus held here made every
    collection walk millions of objects, and parsing timed 111-156 µs, not the ~80 µs a
    `spamkit learn` or `check` spends on it."""
    with batch_gc():
        return _profile_stages(corpus or SpamAssassinCorpus())


def _profile_stages(corpus: SpamAssassinCorpus) -> str:
    messages = list(corpus.messages())
    train = [m for m in messages if fold_of(m.path) != 0]
    test = [m for m in messages if fold_of(m.path) == 0]
    tokenizer = EmailTokenizer()
    timings: dict[str, float] = {}

    def timed(name: str, function, items):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        out = [function(item) for item in items]
        timings[name] = (time.perf_counter() - started) / len(items) * 1e6
        return out

    datas = [m.data for m in train]
    timed("message key (Message-ID + body digest)", message_key, datas)
    parsed = timed("parse", parse_message, datas)
    timed("tokenize to keys (what learn and check run)", tokenizer.tokenize_keys, parsed)
    tokens = timed("tokenize to strings (only for --explain)", tokenizer.tokenize, parsed)
    timed("hash token strings (only for --explain)", hash_tokens, tokens)
    # learning and lookups are timed with the heap a spamkit process has, without the whole
    # corpus parsed and tokenized above (its millions of objects made every garbage
    # collection, and so the lookups, 20-30% slower)
    del parsed, tokens
    gc.collect()
    with tempfile.TemporaryDirectory() as folder:
        with LmdbStore(Path(folder) / "db") as store:
            items = [SourceItem(m.path, m.data) for m in train]
            started = time.perf_counter()
            learner = Learner(store)
            for label in (Label.SPAM, Label.HAM):
                learner.learn([i for i, m in zip(items, train) if m.label == label.value], label)
            whole_learn = (time.perf_counter() - started) / len(train) * 1e6
            test_hashes = [list(tokenizer.tokenize_keys(parse_message(m.data))) for m in test]
            totals = store.totals()
            counts = timed("store lookup (one read transaction)", store.counts, test_hashes)
            batches = [test_hashes[i:i + BATCH_MESSAGES] for i in range(0, len(test_hashes), BATCH_MESSAGES)]
            started = time.perf_counter()
            for batch in batches:
                store.counts_many(batch)
            timings[BATCHED] = (time.perf_counter() - started) / len(test_hashes) * 1e6
            classifier = BayesClassifier(store)
            timed("probabilities + chi-square",
                  lambda c: chi2_combine(token_probabilities(c.spam, c.ham, totals, classifier.params)),
                  counts)
            started = time.perf_counter()
            for batch in batches:
                classifier.score_many(batch)
            timings[WHOLE_BATCHED] = (time.perf_counter() - started) / len(test_hashes) * 1e6
        message = Path(folder) / "message.eml"
        message.write_bytes(test[0].data)
        bare, imports, whole = _process_start(Path(folder) / "db", message)
    learn_rows = ["message key (Message-ID + body digest)", "parse",
                  "tokenize to keys (what learn and check run)",
                  "tokenize to strings (only for --explain)", "hash token strings (only for --explain)"]
    lines = ["| stage | µs per message |", "|---|---:|"]
    lines += [f"| {name} | {timings[name]:.0f} |" for name in learn_rows]
    lines.append(f"| **whole learn, in-process, all stages and commits** | **{whole_learn:.0f}** |")
    lines += [f"| {name} (check) | {timings[name]:.0f} |"
              for name in ("store lookup (one read transaction)", "probabilities + chi-square",
                           BATCHED, WHOLE_BATCHED)]
    tokenizing = timings["parse"] + timings["tokenize to keys (what learn and check run)"]
    lines.append("")
    lines.append(f"Parsing and tokenizing are {tokenizing / whole_learn:.0%} of learning; the rest is "
                 "the learned-once check, batching and the LMDB commit. "
                 f"C tokenizer core: {'built' if HAVE_C_CORE else 'NOT built (Python fallback)'}.")
    per_message = whole * 1e6 / len(test)
    in_process = timings["parse"] + timings["tokenize to keys (what learn and check run)"] + timings[WHOLE_BATCHED]
    lines.append("")
    lines.append(f"Each command is also a process to start. A `spamkit check` of one message, as the benchmark's "
                 f"`spamkit` row runs it (no rules), takes {whole * 1e3:.0f} ms: the interpreter alone "
                 f"{bare * 1e3:.0f} ms, importing the command {imports * 1e3:.0f} ms more, and reading the "
                 f"configuration, opening the database, checking the message and leaving "
                 f"{(whole - bare - imports) * 1e3:.0f} ms "
                 f"(best of {_START_RUNS} each, the three taking turns). Once per command, over the test fold's {len(test):,} messages, that is "
                 f"{per_message:.0f} µs a message, against {in_process:.0f} µs of parsing, tokenizing and "
                 "scoring in-process.")
    return "\n".join(lines)


_START_RUNS = 5


def _process_start(db: Path, message: Path) -> tuple[float, float, float]:
    """Seconds (best of _START_RUNS) to start the interpreter, to import `spamkit check`
    beyond that, and to run a whole one-message `spamkit check`, with the environment the
    benchmark's `spamkit` row runs in (benchmarks.tools.Spamkit). The three take turns,
    so a busy moment of the host slows each of them alike."""
    env = dict(os.environ, SPAMKIT_USEBUILTINRULES="false", SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    # (the first two leave as `check` does, without the interpreter's teardown: decision 0055)
    python = installed.python()
    commands = ([python, "-c", "import os; os._exit(0)"], [python, "-c", "import spamkit.cli.check, os; os._exit(0)"],
                [*installed.spamkit(), "check", "--json", "--db", str(db), str(message)])
    best = [float("inf")] * len(commands)
    for _ in range(_START_RUNS):
        for index, command in enumerate(commands):
            started = time.perf_counter()
            # (from /: `-c` puts the current directory, this checkout, first on the path)
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd="/")
            best[index] = min(best[index], time.perf_counter() - started)
    bare, imported, whole = best
    return bare, imported - bare, whole


if __name__ == "__main__":
    print(profile_stages())
