"""Several processes serving one listening socket: `spamkit spamd --processes N`.

One Python process scans on one core at a time (the interpreter lock), however many
threads it has. SpamAssassin's spamd forks children that share its listening socket; this
does the same. The parent loads the configuration and the rules, binds the socket, then
forks; each child gives up root (the caller's `child` does, once its own database handle
is open) and accepts only while it has a free slot, so the kernel hands a connection to
a child that can take it now.

The parent reads no request and only supervises (a scan that crashes loses one child,
never the port):
- a child that dies is logged and replaced; one that dies within CHILD_SETTLED seconds
  of its start is replaced after a delay that doubles (to RESPAWN_DELAY_MAX), so a child
  that cannot run does not make the parent fork in a tight loop (a fork that fails, out
  of memory or processes, is tried again after RESPAWN_DELAY_MAX);
- SIGTERM or SIGINT is passed to the children; the parent waits for them (each finishes
  the requests it holds) and then returns;
- SIGHUP: the parent reads the configuration again (`reload`); when that worked, a new
  set of children starts from it and the old ones are told to finish and leave. When it
  did not (or raised), the children go on as they were.
A child whose parent has gone (killed with -9) notices within a second and stops the
same way (`parent_gone`).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CHILD_SETTLED = 5.0  # seconds: a child that lived this long counts as having started well
RESPAWN_DELAY_FIRST = 0.1
RESPAWN_DELAY_MAX = 10.0
_SUPERVISED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


@dataclass
class _Child:
    index: int
    started: float


@dataclass
class Prefork:
    """Run `child(index)` in `processes` forked children and keep them running.

    `child` runs in the forked process and returns its exit status; it must stop on
    SIGTERM. `reload` runs in the parent on SIGHUP and says whether the children should
    be replaced (False: the configuration was broken, nothing changes). `tick` runs in
    the parent about once a second (spamd's: the parent's own database handle follows a
    file replaced under it, which its children cannot open until it lets go). A SIGHUP
    that came before `run` (`hangup_before` set) has `reload` run before the first fork."""

    processes: int
    child: Callable[[int], int]
    reload: Callable[[], bool]
    log: logging.Logger
    tick: Callable[[], None] | None = None
    hangup_before: threading.Event | None = None  # set: a SIGHUP came while the daemon started
    _running: dict[int, _Child] = field(default_factory=dict)  # pid -> the child there
    _retiring: set[int] = field(default_factory=set)  # told to finish after a reload
    _due: dict[int, float] = field(default_factory=dict)  # index -> when to fork it again
    _delay: dict[int, float] = field(default_factory=dict)  # index -> its next delay

    def run(self) -> int:
        """Fork the children and supervise them until SIGTERM or SIGINT; 0 then."""
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISED)
        try:
            if self.hangup_before is not None and self.hangup_before.is_set():
                self._reloaded()  # (one from now on waits, blocked, for sigtimedwait)
            for index in range(self.processes):
                self._fork(index, previous_mask)
            while True:
                # (woken by a signal, by a replacement falling due, or once a second)
                wait = min([1.0, *(due - time.monotonic() for due in self._due.values())])
                received = signal.sigtimedwait(_SUPERVISED, max(wait, 0.0))
                self._reap()
                self._ticked()
                if received is not None and received.si_signo in (signal.SIGTERM, signal.SIGINT):
                    self._stop_all()
                    return 0
                if received is not None and received.si_signo == signal.SIGHUP and self._reloaded():
                    self._replace_all(previous_mask)
                now = time.monotonic()
                for index, due in list(self._due.items()):
                    if due <= now:
                        del self._due[index]
                        self._fork(index, previous_mask)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)

    def _ticked(self) -> None:
        if self.tick is None:
            return
        try:
            self.tick()
        except Exception:  # (the children go on serving)
            self.log.exception("the supervisor's periodic work failed")

    def _reloaded(self) -> bool:
        try:
            return self.reload()
        except Exception:  # (the children it has go on serving)
            self.log.exception("reload failed; the children go on as they were")
            return False

    def _fork(self, index: int, previous_mask: set[int | signal.Signals]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # the rules and the rest stay pages the children share: a child's collector leaves
        # what was there at the fork alone (the parent's goes on collecting: its old rules
        # after a reload must be freed)
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as error:  # out of memory or processes: tried again later
            gc.unfreeze()
            self._due[index] = time.monotonic() + RESPAWN_DELAY_MAX
            self.log.error("could not start child %d (%s); trying again in %g s", index,
                           error.strerror or error, RESPAWN_DELAY_MAX)
            return
        if pid != 0:
            gc.unfreeze()
        else:
            code = 70  # EX_SOFTWARE, should the child raise
            try:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the parent's
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
                code = self.child(index)
            except BaseException:  # noqa: BLE001 (a child never returns into the parent's code)
                self.log.exception("child %d failed", index)
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self._running[pid] = _Child(index, time.monotonic())

    def _reap(self) -> None:
        """Collect every child that has ended; plan a new one where it was not asked to end."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self._retiring:
                self._retiring.discard(pid)
                continue
            child = self._running.pop(pid, None)
            if child is None:
                continue
            lived = time.monotonic() - child.started
            delay = self._delay.get(child.index, RESPAWN_DELAY_FIRST) if lived < CHILD_SETTLED else 0.0
            self._delay[child.index] = min(max(2 * delay, RESPAWN_DELAY_FIRST), RESPAWN_DELAY_MAX)
            self._due[child.index] = time.monotonic() + delay
            self.log.warning("child %d (pid %d) %s after %.1f s; another in %.1f s", child.index, pid,
                             _ended(status), lived, delay)

    def _replace_all(self, previous_mask: set[int | signal.Signals]) -> None:
        """After a reload: new children first (no gap in service), then the old ones go."""
        old = list(self._running)
        self._retiring.update(old)
        self._running.clear()
        self._due.clear()
        for index in range(self.processes):
            self._fork(index, previous_mask)
        for pid in old:
            _signal(pid, signal.SIGTERM)

    def _stop_all(self) -> None:
        """SIGTERM to every child; wait until all have finished what they hold."""
        for pid in [*self._running, *self._retiring]:
            _signal(pid, signal.SIGTERM)
        while self._running or self._retiring:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self._running.pop(pid, None)
            self._retiring.discard(pid)


def try_in_a_child(attempt: Callable[[], None]) -> str | None:
    """Run `attempt` in a forked child: None when it returned, else what it raised (its
    message). A child's start, tried once before the children start for good, so that a
    start that cannot work stops the daemon with its reason at once, not in a loop of
    children that die and are replaced."""
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        message = b""
        try:
            os.close(read)
            attempt()
        except BaseException as error:  # noqa: BLE001 (said to the parent, whatever it was)
            message = (str(error) or type(error).__name__).encode("utf-8", "replace")
        finally:
            os.write(write, message[:4000])  # (under PIPE_BUF: one write, whole)
            os._exit(1 if message else 0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    if said:
        return said.decode("utf-8", "replace")
    return None if status == 0 else f"the child {_ended(status)}"


def parent_gone(parent: int) -> bool:
    """True in a child whose parent has ended (it is then some other process's child)."""
    return os.getppid() != parent


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # ended meanwhile: reaped at the next turn


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def share(slots: int, processes: int, index: int) -> int:
    """The child `index`'s part of `slots` (--max-children) shared among `processes`."""
    return slots // processes + (1 if index < slots % processes else 0)
