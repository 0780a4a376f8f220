"""Leaving a one-shot command without the interpreter's teardown.

Postfix or qmail starts `spamkit deliver` for each message, and scripts start `spamkit
check`. When such a process is done, Python's finalization frees every object its
imports made, module by module: ~24 ms of a ~215 ms one-message check here, for memory
the kernel takes back at once anyway (decision 0055).

A command asks for the quick exit with `request()` once its work is durable (files
closed, database committed and closed). `run()`, the installed `spamkit` command, then
does what the teardown would do that matters: it flushes standard output and error and
runs the atexit handlers (logging's among them). Only then does it end the process with
os._exit and the same exit status. It keeps the ordinary exit when another thread is
still running, since the teardown waits for such a thread, or when a flush fails. A
command run in-process (click's CliRunner, the tests) never leaves this way: `request`
only sets a flag that `run` reads.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable

_requested = False


def request() -> None:
    """The command's work is durable: the process may end without the teardown."""
    global _requested
    _requested = True


def run(command: Callable[[], object]) -> None:
    """Run `command` (click's standalone main, which ends in SystemExit) and exit, quickly
    when a command asked for it and it is safe."""
    try:
        command()
    except SystemExit as done:
        if _requested and threading.active_count() == 1:
            _exit_now(done.code)
        raise


def _exit_now(code: object) -> None:
    """Exit with SystemExit's status: None is 0, a number itself, anything else is
    printed to standard error and is 1 (as the interpreter would). Returns, without
    exiting, when standard output or error cannot be flushed: the ordinary exit then
    reports it."""
    status = 0 if code is None else code if isinstance(code, int) else 1
    try:
        atexit._run_exitfuncs()  # (logging.shutdown among them: its files flushed and closed)
        if sys.stdout is not None:
            sys.stdout.flush()
        if sys.stderr is not None:
            if status == 1 and not isinstance(code, int):
                print(code, file=sys.stderr)
            sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe, a full disk: let the ordinary exit say so
        return
    os._exit(status & 0xFF)
