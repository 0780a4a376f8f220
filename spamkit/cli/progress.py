"""A one-line counter on stderr for long work, shown only on a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.count = 0
        self._started = time.monotonic()
        self._shown = 0.0

    def __call__(self, step: int = 1) -> None:
        self.count += step
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.2:
            self._shown = now
            rate = self.count / max(now - self._started, 1e-9)
            sys.stderr.write(f"\r{self.label}: {self.count} messages ({rate:.0f}/s)")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.count:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
