"""The quick exit of one-shot commands (spamkit.cli.quickexit, decision 0055): the same
exit status, output and atexit work as the ordinary exit, without the interpreter's
teardown; and the ordinary exit whenever a thread is still running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# `command` writes 200,000 bytes it never flushes, registers an atexit handler that
# writes a file, keeps an object whose __del__ says "teardown" (the interpreter's
# teardown calls it; a quick exit does not), and ends with the status asked for
_PROGRAM = r"""
import atexit, sys, threading, time
from spamkit.cli import quickexit

class Marker:
    def __del__(self):
        sys.stderr.write("teardown\n")

marker = Marker()
mark_file, status, thread = sys.argv[1], sys.argv[2], sys.argv[3] == "thread"
atexit.register(lambda: open(mark_file, "w").write("atexit ran"))

def command():
    sys.stdout.write("x" * 200_000)
    if thread:
        threading.Thread(target=time.sleep, args=(0.3,)).start()
    quickexit.request()
    sys.exit(int(status) if status.isdigit() else status)

quickexit.run(command)
"""


@pytest.mark.parametrize("status, expected", [("0", 0), ("3", 3), ("74", 74), ("a message", 1)])
def test_the_quick_exit_keeps_status_output_and_atexit(tmp_path: Path, status: str, expected: int) -> None:
    mark = tmp_path / "mark"
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(mark), status, "none"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == expected
    assert done.stdout == "x" * 200_000  # flushed, though the command never did
    assert mark.read_text() == "atexit ran"
    assert "teardown" not in done.stderr  # the teardown was skipped
    assert done.stderr == ("a message\n" if status == "a message" else "")


def test_a_running_thread_gets_the_ordinary_exit(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(mark), "3", "thread"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3 and done.stdout == "x" * 200_000 and mark.read_text() == "atexit ran"
    assert "teardown" in done.stderr  # the interpreter's own exit, which waited for the thread


def test_check_through_a_pipe_prints_every_verdict(tmp_path: Path, all_messages: list) -> None:  # type: ignore[type-arg]
    """`spamkit check` of 300 messages, its output a pipe: every verdict arrives, and a
    path that cannot be read still makes the status 1."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for number, message in enumerate(all_messages[:300]):
        (folder / f"{number:03d}.eml").write_bytes(message.data)
    done = subprocess.run([sys.executable, "-m", "spamkit", "check", "--json", str(folder), str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "SPAMKIT_CONFIG": "/nonexistent/spamkit.toml",
                               "SPAMKIT_USEBAYES": "false", "HOME": str(tmp_path)})
    assert done.returncode == 1, done.stderr
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(verdicts) == 300 and {v["verdict"] for v in verdicts} <= {"ham", "spam", "reject"}
    assert "cannot read" in done.stderr


def test_learn_and_train_leave_their_work_committed(tmp_path: Path, all_messages: list) -> None:  # type: ignore[type-arg]
    """`learn` and `train` take the quick exit once their database is closed: their JSON
    arrives through a pipe, a path that cannot be read still makes the status 1, and the
    database holds what they said they learned."""
    spam, ham = tmp_path / "spam", tmp_path / "ham"
    for folder, label in ((spam, "spam"), (ham, "ham")):
        folder.mkdir()
        for number, message in enumerate([m for m in all_messages if m.label == label][:40]):
            (folder / f"{number:03d}.eml").write_bytes(message.data)
    env = {"PATH": "/usr/bin:/bin", "SPAMKIT_CONFIG": "/nonexistent/spamkit.toml", "HOME": str(tmp_path)}

    def spamkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "spamkit", *args, "--db", str(tmp_path / "db")],
                              capture_output=True, text=True, timeout=300, env=env)

    def totals() -> tuple[int, int]:
        magic = spamkit("db", "magic", "--json")
        assert magic.returncode == 0, magic.stderr
        record = json.loads(magic.stdout)
        return record["nspam"], record["nham"]

    trained = spamkit("train", "--spam", str(spam), "--ham", str(ham), "--json")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["learned"] + summary["confident"] == 80 and summary["failed"] == 0
    nspam, nham = totals()
    assert nspam + nham == summary["learned"]
    (spam / "extra.eml").write_bytes(b"Subject: one more\n\nbuy now\n")
    learned = spamkit("learn", "--spam", "--json", str(spam), str(tmp_path / "none"))
    assert learned.returncode == 1, learned.stderr  # the path that is not there
    record = json.loads(learned.stdout)
    assert record["failed"] == 1 and record["relearned"] == 0
    # the extra message and every spam `train` was already sure of, now learned
    assert record["learned"] == 41 - nspam and record["skipped"] == nspam
    assert totals() == (41, nham)
