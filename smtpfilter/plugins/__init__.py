"""Filter plugins by name: the configuration lists them in the order they run."""

from __future__ import annotations

from smtpfilter.filter import Filter
from smtpfilter.plugins.spamscore import SpamScore

FILTERS: dict[str, type[Filter]] = {"spamscore": SpamScore}
