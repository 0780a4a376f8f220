"""SIGHUP while a daemon is still starting. Its default action ends the process, and the
daemons set their own handler only once up: with SpamAssassin's rules to compile, or a
database slow to answer, that is seconds to half a minute, and a `systemctl reload` then
(sa-update's hook, the daily reload line) killed the service, which systemd does not
restart after SIGHUP. Now it is caught from the command's first line, and the daemon
reloads once it is up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from spamkit.store.redis import READ_TIMEOUT
from tests.servers.net import free_port, wait_for_port
from tests.servers.redis import start_redis


def _catches_sighup(pid: int) -> bool:
    """Whether the process has a handler for SIGHUP (SigCgt, bit 0, in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & 1)
    return False


@pytest.mark.parametrize("command", [["serve", "--next-hop", "127.0.0.1:9"], ["milter"], ["spamd"],
                                     ["spamd", "--processes", "2"]],
                         ids=["serve", "milter", "spamd", "spamd-processes"])
def test_a_reload_asked_for_while_it_starts_is_done_once_it_is_up(tmp_path: Path, command: list[str]) -> None:
    """The start is held inside the token database's first read, by a Redis stopped with
    SIGSTOP; SIGHUP comes then. The daemon must live through it, start once Redis answers,
    reload, and take connections."""
    (tmp_path / "redis").mkdir()
    servers = start_redis(tmp_path / "redis")
    redis = next(servers)
    readable = Path(tempfile.mkdtemp(prefix="spamkit-reload-"))  # (pytest's are root's alone)
    readable.chmod(0o755)
    config = readable / "spamkit.toml"
    config.write_text("")
    config.chmod(0o644)
    port = free_port()
    as_user = ["--user", "nobody"] if os.geteuid() == 0 else []
    redis.process.send_signal(signal.SIGSTOP)
    log_file = tmp_path / "daemon.log"
    with log_file.open("wb") as log_output:
        daemon = subprocess.Popen([sys.executable, "-m", "spamkit", *command, "--listen", f"127.0.0.1:{port}",
                                   *as_user, "--db", redis.url(prefix="starting:"), "--config", str(config)],
                                  stderr=log_output)
    try:
        # (its first read waits READ_TIMEOUT for the stopped Redis: until then it is starting)
        deadline = time.monotonic() + READ_TIMEOUT - 1
        while not _catches_sighup(daemon.pid):
            assert daemon.poll() is None and time.monotonic() < deadline, "SIGHUP is not caught while it starts"
            time.sleep(0.02)
        with pytest.raises(ConnectionRefusedError):  # (not listening yet)
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        daemon.send_signal(signal.SIGHUP)
        time.sleep(0.2)
        redis.process.send_signal(signal.SIGCONT)
        wait_for_port(port, 60)
        deadline = time.monotonic() + 30
        while "reload: configuration" not in log_file.read_text() and time.monotonic() < deadline:
            assert daemon.poll() is None, log_file.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        redis.process.send_signal(signal.SIGCONT)
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        servers.close()
        shutil.rmtree(readable)
    log = log_file.read_text()
    assert daemon.returncode == 0, log[-2000:]
    assert "reload: configuration" in log, log[-2000:]


_WATCH_IMPORT = """
import signal, sys

class Watch:
    seen = False

    def find_spec(self, name, path=None, target=None):
        if name == "spamkit.cli." + sys.argv[1] and not Watch.seen:
            Watch.seen = True
            print("held" if signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL else "default", flush=True)
        return None

sys.meta_path.insert(0, Watch())
from spamkit.cli import run
run()
"""


@pytest.mark.parametrize("command", ["serve", "milter", "spamd"])
def test_sighup_is_held_before_the_daemon_s_own_modules_load(command: str) -> None:
    """Before, the daemon caught SIGHUP only once its module and all it imports had loaded:
    with nothing slow, every hangup sent in `serve`'s first 100 ms ended it (18 of 18), and
    1 of 3 at 150 ms. Now the handler is in place before the command's module is imported
    (measured so: every one in the first 60 ms still ends it, the interpreter's own start;
    none from 80 ms on)."""
    run = subprocess.run([sys.executable, "-c", _WATCH_IMPORT, command, "--help"], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "held"
