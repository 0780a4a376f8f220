"""Prometheus counters with labels, safe across threads: messages, refusals and kept-back
refusals (metrics.Metrics), checks a filter could not make (metrics.UNCHECKED) and DNS
list answers (dnslists.TALLY), for the metrics endpoint to show."""

from __future__ import annotations

import threading
from collections import Counter


class LabelledCounter:
    """One counter name, counted by the values of its labels."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help_text = help_text
        self.labels = labels
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, ...]] = Counter()

    def count(self, *values: str) -> None:
        with self._lock:
            self._counts[values] += 1

    def counts(self) -> dict[tuple[str, ...], int]:
        with self._lock:
            return dict(self._counts)

    def exposition(self) -> list[str]:
        """The Prometheus text lines (label values are names we chose or validated zone
        names, so need no escaping)."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter"]
        for values, n in sorted(self.counts().items()):
            labels = ",".join(f'{label}="{value}"' for label, value in zip(self.labels, values))
            lines.append(f"{self.name}{{{labels}}} {n}")
        return lines
