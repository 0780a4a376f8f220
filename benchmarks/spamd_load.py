"""`python -m benchmarks.spamd_load`: `spamkit spamd` against SpamAssassin's spamd, through
Debian's spamc, in the same run.

The test fold (1,247 messages) goes through `spamc -c`, one spamc process a message as a
.qmail or procmail line runs it, from CLIENTS streams at once, to each daemon in turn:

- SpamAssassin's spamd 4.0 (Debian's `spamd` package): Debian's rule files, network
  tests off (-L), no Bayes database, CLIENTS children;
- `spamkit spamd` with the same rule files, no Bayes: the same work;
- `spamkit spamd` as installed: its built-in rules and a Bayes database filled by
  `spamkit train` on folds 1-4;
each of spamkit's twice: one process (scanning on CLIENTS threads), and CLIENTS processes
(`--processes`).

Both daemons start before timing (rules loaded; spamkit's prefilter compiled). Each row
counts what it called spam at its own threshold (5 points).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import installed
from benchmarks.training import train_on_training_folds
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of
from spamkit.store import LmdbStore
from tests.servers.net import free_port, wait_for_port

CLIENTS = 2  # the machine's cores
DEBIAN_RULES = "/usr/share/spamassassin"


def _ensure_installed() -> None:
    missing = [package for package, program in (("spamd", "/usr/sbin/spamd"), ("spamc", "spamc"))
               if shutil.which(program) is None]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env)


def _as_nobody() -> list[str]:
    return ["--user", "nobody"] if os.geteuid() == 0 else []


def _start_spamkit(port: int, db: Path, config: Path, env: dict[str, str],
                   processes: int = 1) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([*installed.spamkit(), "spamd", "--listen", f"127.0.0.1:{port}",
                                "--db", str(db), "--config", str(config), "--max-children", str(CLIENTS),
                                "--processes", str(processes), *_as_nobody()],
                               stderr=subprocess.DEVNULL, env=env)
    wait_for_port(port, 300)  # the first start compiles the rule prefilter
    return process


def _start_spamassassin(port: int, home: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["/usr/sbin/spamd", "-L", f"--listen=127.0.0.1:{port}", "-x",
                                "-m", str(CLIENTS), f"--min-children={CLIENTS}",
                                f"--max-spare={CLIENTS}", "-s", "stderr",
                                *(["-u", "nobody"] if os.geteuid() == 0 else [])],
                               stderr=subprocess.DEVNULL, env=dict(os.environ, HOME=str(home)))
    wait_for_port(port, 300)
    return process


def _through_spamc(port: int, files: list[Path]) -> tuple[float, list[float]]:
    """Seconds for every file through `spamc -c`, and each file's score."""
    def one(path: Path) -> float:
        with path.open("rb") as message:
            done = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-t", "120", "-c"],
                                  stdin=message, capture_output=True, timeout=300)
        score = done.stdout.decode().split("/", 1)[0]
        return float(score) if score.strip() else 0.0

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        scores = list(pool.map(one, files))
    return time.perf_counter() - started, scores


def spamd_report() -> str:
    _ensure_installed()
    work = Path(tempfile.mkdtemp(prefix="spamkit-spamd-"))
    os.chmod(work, 0o755)
    corpus = SpamAssassinCorpus()
    test = [m for m in corpus.messages() if fold_of(m.path) == TEST_FOLD]
    folder = work / "messages"
    folder.mkdir()
    files = []
    for index, message in enumerate(test):
        files.append(folder / f"{index:05d}.eml")
        files[-1].write_bytes(message.data)
    is_spam = [m.label == "spam" for m in test]
    db = work / "db"
    with LmdbStore(db) as store:
        train_on_training_folds(store, corpus)
    same_rules = work / "same-rules.toml"
    same_rules.write_text(f'UseBayes = false\nUseBuiltinRules = false\nRulePaths = ["{DEBIAN_RULES}"]\n')
    installed = work / "installed.toml"
    installed.write_text("")
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
    (work / "cache").mkdir()
    os.chmod(work / "cache", 0o777)  # (spamd runs as nobody once it has compiled)
    (work / "home").mkdir()
    rows = []
    daemons: list[tuple[str, Callable[[int], subprocess.Popen[bytes]]]] = [
            ("SpamAssassin 4.0 spamd (Debian's rules, -L, no Bayes)",
             lambda port: _start_spamassassin(port, work / "home")),
            ("spamkit spamd, the same rule files, no Bayes",
             lambda port: _start_spamkit(port, db, same_rules, env)),
            (f"the same, `--processes {CLIENTS}`",
             lambda port: _start_spamkit(port, db, same_rules, env, CLIENTS)),
            ("spamkit spamd as installed (built-in rules, Bayes trained by `spamkit train`)",
             lambda port: _start_spamkit(port, db, installed, env)),
            (f"the same, `--processes {CLIENTS}`",
             lambda port: _start_spamkit(port, db, installed, env, CLIENTS))]
    for name, start in daemons:
        port = free_port()
        process = start(port)
        try:
            seconds, scores = _through_spamc(port, files)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        called = [score >= 5.0 for score in scores]
        rows.append((name, seconds, sum(c and not s for c, s in zip(called, is_spam)),
                     sum(c and s for c, s in zip(called, is_spam))))
    shutil.rmtree(work, ignore_errors=True)
    spam, ham = sum(is_spam), len(is_spam) - sum(is_spam)
    reference = rows[0][1]
    lines = [f"| daemon (test fold, {len(files):,} messages; `spamc -c` a message, {CLIENTS} clients "
             "at once) | seconds | msg/s | speed against SpamAssassin's spamd | false positives "
             "at 5 | spam caught at 5 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, seconds, false_positives, caught in rows:
        lines.append(f"| {name} | {seconds:.1f} | {len(files) / seconds:,.1f} | "
                     f"{reference / seconds:.1f}x | {false_positives} of {ham} | "
                     f"{caught} of {spam} ({100 * caught / spam:.1f}%) |")
    lines += ["", "Each message's time includes starting a spamc process, as a .qmail or "
                  "procmail line does. SpamAssassin's spamd forks a child a connection from a "
                  f"pool of {CLIENTS}; `spamkit spamd` is one process that scans on "
                  f"{CLIENTS} threads under one interpreter lock, or with `--processes {CLIENTS}` "
                  f"{CLIENTS} forked processes of one scan each (decision 0051)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(spamd_report())
