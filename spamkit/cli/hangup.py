"""SIGHUP held from a daemon's first line: `serve`, `milter` and `spamd` reload on it,
but its default action ends the process.

A daemon set its own handler only once it had started: seconds where SpamAssassin's rules
load (half a minute to compile them cold) or the database is slow to answer, and even
with nothing slow ~150 ms of imports from the process's start (measured here). A
`systemctl reload` meanwhile (sa-update's hook, the daily reload line, an administrator
after a restart) killed it, and systemd does not restart a service SIGHUP ended: the mail
waited until someone noticed. `spamkit.cli.run` holds it before the command's modules are
imported; the daemon takes the same event and reloads once it is up if one came (the
configuration may have changed after it was read). This module imports nothing more.
"""

from __future__ import annotations

import signal
import threading

DAEMONS = frozenset({"serve", "milter", "spamd"})

_held: threading.Event | None = None


def hangups_held() -> threading.Event:
    """The event SIGHUP sets from now on: the one `hold_for` made, if it did (taken once),
    else a new one with its handler."""
    global _held
    came, _held = _held, None
    if came is None:
        came = _new_hold()
    return came


def hold_for(argv: list[str]) -> None:
    """Hold SIGHUP when `argv` (sys.argv) runs a daemon: `spamkit serve ...`."""
    global _held
    if len(argv) > 1 and argv[1] in DAEMONS:
        _held = _new_hold()


def _new_hold() -> threading.Event:
    came = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: came.set())
    return came
