"""`python -m benchmarks.soak`: learning and scanning at once, for an hour (checklist item 30).

A database trained on folds 1-4 is shared by:

- one learner process, autolearning a stream of new messages (fold 0's, each with a
  Message-ID of its own, so each is a message never seen before), in batches, with
  `BayesMaxTokens` low enough that expiry keeps the token count at its cap;
- `--scanners` processes of `--threads` threads each, scanning fold 0 message by message
  as `spamkit serve`'s worker threads do (one short read transaction a message).

Every `--interval` seconds it samples the file's size, the pages in use by each table,
the pages LMDB has handed out (`last_pgno`), the free pages between them, the reader
slots in use, and both rates. What it checks: once the token count sits at its cap, the
pages of the token table stay flat, and the file grows only by what the seen and history
tables hold (each learned message adds one record to each) — free pages do not pile
up behind readers. And no scanner meets MDB_READERS_FULL.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

import lmdb

from benchmarks.training import train_on_training_folds
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of
from spamkit.config import load_config
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.verdict import Scanner

TABLES = (b"tokens", b"seen", b"history", b"meta")


def _fold0() -> list[tuple[str, bytes]]:
    return [(m.label, m.data) for m in SpamAssassinCorpus().messages() if fold_of(m.path) == TEST_FOLD]


def _learner(db: Path, stop_at: float, max_tokens: int, batch: int, counter: multiprocessing.Value) -> None:
    messages = _fold0()
    store = LmdbStore(db)
    learner = Learner(store, batch_size=batch, max_tokens=max_tokens)
    serial = 0
    while time.time() < stop_at:
        by_label: dict[str, list[SourceItem]] = {"spam": [], "ham": []}
        for _ in range(batch):
            label, data = messages[serial % len(messages)]
            fresh = f"Message-ID: <soak-{serial}@spamkit.test>\n".encode() + data
            by_label[label].append(SourceItem(f"soak-{serial}", fresh))
            serial += 1
        for label, items in by_label.items():
            learner.learn(items, Label(label), by="autolearn")
        with counter.get_lock():
            counter.value += batch
    store.close()


def _scanner(db: Path, stop_at: float, threads: int, counter: multiprocessing.Value,
             errors: multiprocessing.Queue) -> None:
    messages = _fold0()
    store = LmdbStore(db)
    scanner = Scanner.from_config(load_config("/nonexistent/spamkit.toml", environ={}), store)

    def scan_loop(offset: int) -> None:
        index = offset
        while time.time() < stop_at:
            try:
                scanner.scan(messages[index % len(messages)][1])
            except Exception as error:  # noqa: BLE001 - every failure is reported
                errors.put(f"{type(error).__name__}: {error}")
                return
            index += 1
            with counter.get_lock():
                counter.value += 1

    workers = [threading.Thread(target=scan_loop, args=(i * 97,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()


def _sample(db: Path) -> dict[str, int]:
    env = lmdb.open(str(db), readonly=True, max_dbs=8, lock=True)
    try:
        info = env.info()
        sample = {"file_bytes": (db / "data.mdb").stat().st_size,
                  "last_pgno": info["last_pgno"], "readers": info["num_readers"]}
        in_use = 3  # two meta pages and the main table's root
        with env.begin() as txn:
            for name in TABLES:
                stat = txn.stat(env.open_db(name, txn=txn, create=False))
                pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
                sample[f"{name.decode()}_pages"] = pages
                sample[f"{name.decode()}_entries"] = stat["entries"]
                in_use += pages
        sample["free_pages"] = info["last_pgno"] + 1 - in_use
        return sample
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--scanners", type=int, default=2)
    parser.add_argument("--threads", type=int, default=6, help="serve's worker threads (its default pool)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=85_000,
                        help="BayesMaxTokens: below the ~91,000 tokens folds 1-4 and fold 0 give, so expiry runs")
    parser.add_argument("--out", type=Path, help="write the samples as JSON lines here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="spamkit-soak-") as scratch:
        db = Path(scratch) / "db"
        with LmdbStore(db, sync=False) as store:
            train_on_training_folds(store)
        learned, scanned = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)
        errors: multiprocessing.Queue = multiprocessing.Queue()
        started = time.time()
        stop_at = started + args.seconds
        processes = [multiprocessing.Process(target=_learner,
                                             args=(db, stop_at, args.max_tokens, args.batch, learned))]
        processes += [multiprocessing.Process(target=_scanner, args=(db, stop_at, args.threads, scanned, errors))
                      for _ in range(args.scanners)]
        for process in processes:
            process.start()
        samples = []
        out = open(args.out, "w") if args.out else None
        print("  min  learned  scanned  tokens    seen  history  file MB  tok pg  seen pg  hist pg  free pg  readers")
        while any(p.is_alive() for p in processes):
            time.sleep(min(args.interval, max(0.1, stop_at - time.time() + 1)))
            sample = _sample(db) | {"seconds": round(time.time() - started),
                                    "learned": learned.value, "scanned": scanned.value}
            samples.append(sample)
            if out:
                out.write(json.dumps(sample) + "\n")
                out.flush()
            print(f"{sample['seconds'] / 60:5.1f} {sample['learned']:8,} {sample['scanned']:8,} "
                  f"{sample['tokens_entries']:7,} {sample['seen_entries']:7,} {sample['history_entries']:8,} "
                  f"{sample['file_bytes'] / 1e6:8.1f} {sample['tokens_pages']:7,} {sample['seen_pages']:8,} "
                  f"{sample['history_pages']:8,} {sample['free_pages']:8,} {sample['readers']:8}", flush=True)
        for process in processes:
            process.join()
        failures = []
        while not errors.empty():
            failures.append(errors.get())
        _summarize(samples, failures, [p.exitcode for p in processes])


def _summarize(samples: list[dict[str, int]], failures: list[str], exit_codes: list[int | None]) -> None:
    """The second half of the run (the token count long at its cap) against its start."""
    half = samples[len(samples) // 2]
    last = samples[-1]
    learned = last["learned"] - half["learned"]
    print(f"\nsecond half: {learned:,} messages learned, {last['scanned'] - half['scanned']:,} scanned")
    for name in ("tokens", "seen", "history"):
        print(f"  {name} pages: {half[f'{name}_pages']:,} -> {last[f'{name}_pages']:,}")
    print(f"  free pages: {half['free_pages']:,} -> {last['free_pages']:,}")
    grown = last["file_bytes"] - half["file_bytes"]
    print(f"  file: {half['file_bytes'] / 1e6:.1f} -> {last['file_bytes'] / 1e6:.1f} MB "
          f"({grown / max(1, learned):.0f} bytes a learned message)")
    print(f"  scanner failures: {len(failures)}; exit codes {exit_codes}")
    for failure in failures[:5]:
        print(f"    {failure}")


if __name__ == "__main__":
    main()
