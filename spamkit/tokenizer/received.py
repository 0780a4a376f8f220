"""Received-header tokens: the relays' host names and parent domains, and their networks.

The mail's path says much about it (the same relays carry a list's mail, a spam gang's
botnet sits in a few networks). These are the tokens as strings; the C core
(`_fast.received_keys`) makes their keys straight from the text, and the two are tested
to agree (tests/engine/test_fast_tokenizer.py).
"""

from __future__ import annotations

import re

RECEIVED_HOST = re.compile(r"(?:from|by)\s+([a-z0-9.-]{3,100})")
# MTAs write the connecting address in brackets; a literal "[" makes this 3x faster
# than looking for an address anywhere.
IPV4 = re.compile(r"\[(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}\]")


def _host_tokens(host: str) -> tuple[str, ...]:
    """A host and its parent domains, from up to four labels deep ("received:mx.a.example",
    "received:a.example")."""
    labels = host.strip(".").split(".")
    return tuple("received:" + ".".join(labels[i:])
                 for i in range(max(0, len(labels) - 4), len(labels) - 1))


def received_tokens(value: str) -> set[str]:
    """Hosts (and their parent domains) and /24 and /16 networks of all Received lines
    (their values joined into `value`)."""
    out: set[str] = set()
    for host in set(RECEIVED_HOST.findall(value.lower())):
        out.update(_host_tokens(host))
    for a, b, c in set(IPV4.findall(value)):
        out.add(f"received:ip:{a}.{b}.{c}")
        out.add(f"received:ip:{a}.{b}")
    return out
