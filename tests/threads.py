"""Calls made from several threads at once, for the tests of what threads race over."""

from __future__ import annotations

import threading
from collections.abc import Callable


def from_threads(call: Callable[[], object], count: int) -> None:
    """`call` on `count` threads started together; returns once every one has ended."""
    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
