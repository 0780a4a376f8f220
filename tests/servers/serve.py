"""`spamkit serve` started as its users start it: a process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.servers.net import free_port, wait_for_port

T = TypeVar("T")


def start_serve(next_hop_port: int, db: Path | str, config: Path, *options: str, wait: bool = True,
                stderr: int = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], int]:
    """(process, port) of `spamkit serve [options]`; with `wait`, once the port answers
    (a server that never answers is killed, not left behind)."""
    port = free_port()
    if os.geteuid() == 0 and "--user" not in options:
        options = (*options, "--user", "nobody")  # it refuses to run as root
    process = subprocess.Popen([sys.executable, "-m", "spamkit", "serve", *options,
                                "--listen", f"127.0.0.1:{port}", "--next-hop", f"127.0.0.1:{next_hop_port}",
                                "--db", str(db), "--config", str(config)], stderr=stderr)
    if wait:
        try:
            wait_for_port(port)
        except RuntimeError:
            process.kill()
            process.wait(10)
            raise
    return process, port


def stop_serve(process: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    """Stop it as an init system does (SIGTERM): (its exit status, what it wrote to stderr).
    One still running a minute later is sent SIGABRT, on which it writes every thread's
    stack (spamkit.cli.serve.report_fatal_signals), and the test fails showing them."""
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        raise AssertionError("spamkit serve was still running 60 s after SIGTERM; its log, "
                             "and the stacks SIGABRT had it write:\n"
                             + (stderr or b"").decode("utf-8", "replace")[-30_000:]) from None
    return process.returncode, stderr or b""


def start_milter(db: Path | str, config: Path, *options: str,
                 stderr: int = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], int]:
    """(process, port) of `spamkit milter [options]` on a free loopback port, once it
    answers; with `--socket PATH` among the options, port 0, once the socket is there.
    (Its log goes to `stderr`: a pipe no one reads stops it after 64 kB.)"""
    import time

    port = 0 if "--socket" in options else free_port()
    if os.geteuid() == 0 and "--user" not in options:
        options = (*options, "--user", "nobody")  # it refuses to run as root
    listen = ["--listen", f"127.0.0.1:{port}"] if port else []
    process = subprocess.Popen([sys.executable, "-m", "spamkit", "milter", *options, *listen,
                                "--db", str(db), "--config", str(config)], stderr=stderr)
    try:
        if port:
            wait_for_port(port)
        else:
            socket_path = Path(options[options.index("--socket") + 1])
            deadline = time.monotonic() + 60
            while not socket_path.is_socket():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"spamkit milter made no socket at {socket_path}")
                time.sleep(0.05)
    except RuntimeError:
        process.kill()
        process.wait(10)
        raise
    return process, port


def sigterm_while_waiting(process: subprocess.Popen[bytes], send: Callable[[], T],
                          asked: Callable[[], object]) -> tuple[T, bytes]:
    """Run `send` (a message to the daemon `process`) on a thread; once `asked` returns
    (a silent server has its request: the message is being checked), stop the daemon with
    SIGTERM. (What `send` returned, what the daemon wrote to stderr), once both have ended."""
    sent: list[T] = []
    sending = threading.Thread(target=lambda: sent.append(send()))
    sending.start()
    asked()
    process.send_signal(signal.SIGTERM)
    _, log = process.communicate(timeout=60)
    sending.join(60)
    assert sent, "the message's sending did not end"
    return sent[0], log
