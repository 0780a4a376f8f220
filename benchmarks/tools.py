"""The filters under test, each driven as its users drive it: one process per command.

Each tool learns a list of spam files and ham files, then scores the test files; wall
time and peak memory come from the child processes themselves (os.wait4), so startup
costs count for every tool alike.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import installed


@dataclass
class Run:
    seconds: float
    max_rss_kib: int
    stdout: str


GNU_TIME = "/usr/bin/time"


def run_measured(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a command, returning its wall time, its own peak RSS and its output.

    Peak memory comes from GNU time (Debian package `time`): the rusage of a child
    forked from this Python process counts the parent's pages too.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss_file:
        measured = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *command]
        started = time.perf_counter()
        process = subprocess.run(measured, stdout=out, stderr=err, env=env)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        rss_lines = rss_file.read().split()
    if process.returncode not in (0, 1, 2):  # bogofilter's exit codes carry the verdict
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {stderr.decode()[-500:]}")
    rss = int(rss_lines[-1]) if rss_lines and rss_lines[-1].isdigit() else 0
    return Run(seconds, rss, stdout.decode("utf-8", "replace"))


def directory_bytes(path: Path) -> int:
    """Disk space actually used (blocks), so sparse or preallocated files count fairly."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


@dataclass
class ToolResult:
    name: str
    learn_seconds: float = 0.0
    check_seconds: float = 0.0
    learn_rss_kib: int = 0
    check_rss_kib: int = 0
    db_bytes: int = 0
    scores: list[float] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # "ham", "unsure" or "spam"


class Tool:
    name = ""
    package = ""  # Debian package providing it, if any
    command = ""  # the program the package provides, when not named as the tool
    same_model_as = ""  # a tool whose accuracy this one repeats (left out of cross-validation)

    def __init__(self, workdir: Path) -> None:
        self.db = workdir / self.name.split()[0]
        if self.db.exists():
            shutil.rmtree(self.db)
        self.db.mkdir(parents=True)

    def db_bytes(self) -> int:
        return directory_bytes(self.db)

    def learn(self, spam: list[Path], ham: list[Path], spam_dir: Path, ham_dir: Path) -> list[Run]:
        raise NotImplementedError

    def check(self, files: list[Path], test_dir: Path) -> tuple[Run, list[float], list[str]]:
        raise NotImplementedError


class Spamkit(Tool):
    """spamkit's Bayes classifier alone, as bogofilter and spamprobe are classifiers alone:
    no rules (UseBuiltinRules off), verdict and score from Bayes."""

    name = "spamkit"
    env = dict(os.environ, SPAMKIT_USEBUILTINRULES="false", SPAMKIT_CONFIG="/nonexistent/spamkit.toml")

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        if installed.python() == sys.executable:
            # (run from the checkout, not installed: benchmarks.installed) pip
            # byte-compiles an installed package; an editable checkout under
            # PYTHONDONTWRITEBYTECODE (set on these machines) would have every command
            # compile spamkit's sources again, ~35 ms a process no installed spamkit pays.
            import spamkit
            import trainer

            for package in (spamkit, trainer):
                compileall.compile_dir(Path(package.__file__).parent, quiet=1)

    def _command(self, *args: str) -> list[str]:
        return [*installed.spamkit(), *args, "--db", str(self.db / "db")]

    def learn(self, spam: list[Path], ham: list[Path], spam_dir: Path, ham_dir: Path) -> list[Run]:
        """`spamkit train`, the way to fill a database from a corpus (decision 0012), as
        spamprobe runs in its train mode."""
        return [run_measured(self._command("train", "--spam", str(spam_dir), "--ham", str(ham_dir),
                                           "--quiet"), self.env)]

    def check(self, files: list[Path], test_dir: Path) -> tuple[Run, list[float], list[str]]:
        run = run_measured(self._command("check", "--json", *map(str, files)), self.env)
        records = {r["path"]: r for r in map(json.loads, run.stdout.splitlines())}
        scores, verdicts = [], []
        for path in files:
            record = records[str(path)]
            # the log-odds order messages where the probability rounds to 0 or 1
            scores.append(0.0 if record["bayes"] is None else record["bayes_log_odds"])
            verdicts.append(record["bayes_verdict"])
        return run, scores, verdicts


class SpamkitLearnAll(Spamkit):
    """spamkit with every training message learned (`spamkit learn --spam`, then `--ham`),
    as bogofilter is run here: what a database built without `spamkit train` does."""

    name = "spamkit-learn-all"

    def learn(self, spam: list[Path], ham: list[Path], spam_dir: Path, ham_dir: Path) -> list[Run]:
        return [run_measured(self._command("learn", "--spam", str(spam_dir), "--quiet"), self.env),
                run_measured(self._command("learn", "--ham", str(ham_dir), "--quiet"), self.env)]


class SpamkitRedis(Spamkit):
    """`spamkit train` and `spamkit check` as the `spamkit` row, into a Redis database on
    loopback (docs/decisions/0017): what the shared store costs against the embedded one.
    One redis-server for the whole run, emptied before each round."""

    name = "spamkit-redis"
    package = "redis-server"
    command = "redis-server"
    same_model_as = "spamkit"
    _server: subprocess.Popen[bytes] | None = None
    _port = 0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        if SpamkitRedis._server is None:
            SpamkitRedis._start(workdir)
        subprocess.run(["redis-cli", "-p", str(self._port), "flushall"], check=True,
                       capture_output=True)

    @classmethod
    def _start(cls, workdir: Path) -> None:
        import atexit
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            cls._port = probe.getsockname()[1]
        cls._server = subprocess.Popen(
            ["redis-server", "--port", str(cls._port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        atexit.register(cls._stop)
        for _ in range(200):
            if subprocess.run(["redis-cli", "-p", str(cls._port), "ping"], capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @classmethod
    def _stop(cls) -> None:
        if cls._server is not None:
            cls._server.terminate()
            cls._server.wait(10)

    def _command(self, *args: str) -> list[str]:
        return [*installed.spamkit(), *args, "--db", f"redis://127.0.0.1:{self._port}/0"]

    def db_bytes(self) -> int:
        """What Redis reports for the database's keys (MEMORY USAGE), as `db magic` shows it."""
        out = subprocess.run(self._command("db", "magic", "--json"), capture_output=True, text=True,
                             check=True, env=self.env).stdout
        return int(json.loads(out)["bytes_used"])


class Bogofilter(Tool):
    name = "bogofilter"
    package = "bogofilter"

    def learn(self, spam: list[Path], ham: list[Path], spam_dir: Path, ham_dir: Path) -> list[Run]:
        base = ["bogofilter", "-d", str(self.db), "-B"]
        return [run_measured(base[:3] + ["-s", "-B", *map(str, spam)]),
                run_measured(base[:3] + ["-n", "-B", *map(str, ham)])]

    def check(self, files: list[Path], test_dir: Path) -> tuple[Run, list[float], list[str]]:
        run = run_measured(["bogofilter", "-d", str(self.db), "-T", "-B", *map(str, files)])
        by_path = {}
        for line in run.stdout.splitlines():
            path, flag, score = line.rsplit(" ", 2)
            by_path[path] = (float(score), {"S": "spam", "H": "ham"}.get(flag, "unsure"))
        scores = [by_path[str(p)][0] for p in files]
        verdicts = [by_path[str(p)][1] for p in files]
        return run, scores, verdicts


class Spamprobe(Tool):
    name = "spamprobe"
    package = "spamprobe"

    def learn(self, spam: list[Path], ham: list[Path], spam_dir: Path, ham_dir: Path) -> list[Run]:
        base = ["spamprobe", "-d", str(self.db)]
        return [run_measured(base + ["train-spam", *map(str, spam)]),
                run_measured(base + ["train-good", *map(str, ham)])]

    def check(self, files: list[Path], test_dir: Path) -> tuple[Run, list[float], list[str]]:
        run = run_measured(["spamprobe", "-d", str(self.db), "score", *map(str, files)])
        lines = run.stdout.splitlines()
        if len(lines) != len(files):
            raise RuntimeError(f"spamprobe scored {len(lines)} of {len(files)} messages")
        scores, verdicts = [], []
        for line in lines:
            flag, score = line.split()[:2]
            scores.append(float(score))
            verdicts.append("spam" if flag == "SPAM" else "ham")
        return run, scores, verdicts


TOOLS: dict[str, type[Tool]] = {"spamkit": Spamkit, "spamkit-learn-all": SpamkitLearnAll,
                                "spamkit-redis": SpamkitRedis, "bogofilter": Bogofilter,
                                "spamprobe": Spamprobe}


def ensure_installed(tools: list[type[Tool]]) -> None:
    """Install the Debian packages of the reference tools when missing (needs root)."""
    missing = [t.package for t in tools if t.package and shutil.which(t.command or t.name) is None]
    if not Path(GNU_TIME).exists():
        missing.append("time")
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
