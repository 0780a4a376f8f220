"""SpamAssassin's registry boundaries: which part of a host name is the registered domain
(example.co.uk of www.example.co.uk), read as its RegistryBoundaries reads it.

The lists come from the rule files (util_rb_tld, util_rb_2tld, util_rb_3tld: Debian's
20_aux_tlds.cf), not from the Public Suffix List the SMTP filter uses (smtpfilter/domains):
the evals that compare domains were scored on SpamAssassin's own reading, and the two
differ (the Public Suffix List knows blogspot.com and github.io as suffixes; these lists
do not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spamkit.tokenizer.urls import ascii_host

# RFC 1480's state labels under .us, under which names go one level deeper
US_STATES = frozenset(
    "ak al ar az ca co ct dc de fl ga gu hi ia id il in ks ky la ma md me mi mn mo ms mt nc nd ne nh "
    "nj nm nv ny oh ok or pa pr ri sc sd tn tx ut va vi vt wa wi wv wy".split())

# the shapes each directive accepts, all entries or none (as SpamAssassin's Conf checks)
_SHAPES = {
    "util_rb_tld": re.compile(r"[^\s.]+(?:\s+[^\s.]+)*"),
    "util_rb_2tld": re.compile(r"[^\s.]+\.[^\s.]+(?:\s+[^\s.]+\.[^\s.]+)*"),
    "util_rb_3tld": re.compile(r"[^\s.]+\.[^\s.]+\.[^\s.]+(?:\s+[^\s.]+\.[^\s.]+\.[^\s.]+)*"),
}


@dataclass
class RegistryLists:
    """What the util_rb_* lines of the rule files said, in order (clear_util_rb empties)."""

    tlds: set[str] = field(default_factory=set)
    two_level: set[str] = field(default_factory=set)
    three_level: set[str] = field(default_factory=set)

    def add(self, directive: str, value: str) -> None:
        """One util_rb_* line; ValueError (naming what it wants) when an entry is
        misshapen, and then none of the line's entries is taken."""
        if _SHAPES[directive].fullmatch(value.strip()) is None:
            labels = {"util_rb_tld": "one label", "util_rb_2tld": "two labels",
                      "util_rb_3tld": "three labels"}[directive]
            raise ValueError(f"{directive} takes domains of {labels} each, separated by spaces")
        target = {"util_rb_tld": self.tlds, "util_rb_2tld": self.two_level,
                  "util_rb_3tld": self.three_level}[directive]
        target.update(ascii_host(entry) for entry in value.split())

    def clear(self) -> None:
        self.tlds.clear()
        self.two_level.clear()
        self.three_level.clear()


class Registry:
    """split_domain, trim_domain and is_domain_valid over one set of lists."""

    def __init__(self, lists: RegistryLists) -> None:
        self.tlds = frozenset(lists.tlds)
        self.two_level = frozenset(lists.two_level)
        self.three_level = frozenset(lists.three_level)

    def split_domain(self, name: str) -> tuple[str, str]:
        """(host part, registered domain): ("www", "example.co.uk") for
        www.example.co.uk. With no list matching, the domain is the last two labels."""
        name = re.sub(r"\.{2,}", ".", ascii_host(name)).strip(".")
        if not name:
            return "", ""
        labels = name.split(".")
        host: list[str] = []
        while len(labels) > 1:
            if self._is_suffix(labels):
                break
            host.append(labels.pop(0))
        if host:
            labels.insert(0, host.pop())
        return ".".join(host), ".".join(labels)

    def _is_suffix(self, labels: list[str]) -> bool:
        """Whether the labels left are a public suffix a name is registered under."""
        if len(labels) == 2:
            return ".".join(labels) in self.two_level
        if len(labels) == 3:
            if labels[2] == "us":
                return labels[1] in US_STATES
            return ".".join(labels) in self.three_level
        if len(labels) == 4 and labels[3] == "us" and (
                labels[:2] == ["pvt", "k12"] or labels[0] in ("ci", "co")):
            return labels[2] in US_STATES
        return False

    def trim_domain(self, name: str) -> str:
        return self.split_domain(name)[1]

    def is_domain_valid(self, name: str) -> bool:
        """A name with a dot, no white space, and a last label the lists know as a TLD."""
        name = ascii_host(name)
        if re.search(r"\s", name) or "." not in name:
            return False
        return name.rpartition(".")[2] in self.tlds
