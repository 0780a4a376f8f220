"""Header tokens, each prefixed with its header's name ("subject:free", "from:addr:...").

Which headers are read, and how, is decided in docs/decisions/0002-tokenizer.md.
Headers written by spam filters are never read: learning from another filter's verdict
would make spamkit repeat it, right or wrong.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

from spamkit.tokenizer.sink import HeaderPlan, StringSink
from spamkit.tokenizer.text import EMAIL

# Headers that are unique per message (pure noise) or written by other filters.
IGNORED_HEADERS = frozenset({
    "date", "message-id", "content-length", "lines", "status", "x-status", "x-uidl",
    "x-keywords", "delivered-to-id",
})
IGNORED_PREFIXES = ("x-spam", "x-bogosity", "x-dspam", "x-rspamd", "x-spamkit")
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender", "return-path",
                             "errors-to", "delivered-to", "x-original-to"})
WHOLE_VALUE_HEADERS = frozenset({"x-mailer", "user-agent", "content-type", "mime-version",
                                 "x-priority", "x-msmail-priority", "content-transfer-encoding",
                                 "precedence", "list-id"})

# The headers the "selected" option reads: what the sender controls or the path shows.
SELECTED_HEADERS = frozenset({"subject", "from", "to", "cc", "reply-to", "received", "message-id",
                              "content-type", "x-mailer", "user-agent", "return-path", "sender",
                              "x-priority", "x-msmail-priority", "mime-version",
                              "content-transfer-encoding"})

_MESSAGE_ID_DOMAIN = re.compile(r"@([^>\s]{1,200})")
_SPACE = re.compile(r"\s+")
_LETTERS = re.compile(r"[A-Za-z]")
_UPPER = re.compile(r"[A-Z]")


def emit_header_tokens(sink: StringSink, headers: list[tuple[str, str]],
                       fold_case: bool = True, selected_only: bool = True,
                       presence: bool = False) -> None:
    """Put a message's header tokens into `sink`."""
    if fold_case and selected_only:  # the default: a KeySink with the C core does it in one call
        leftovers = sink.selected_header_keys(headers, _C_PLANS)
        if leftovers is not None:
            for (code, flags, _, prefix), value in leftovers:  # (values that are not ASCII)
                if code == _C_KINDS[_MESSAGE_ID]:
                    sink.update(_message_id_tokens(value))
                elif flags & _C_ADDRESS:
                    sink.update(_address_tokens(prefix, value))
                else:
                    sink.add(_whole_value_token(prefix, value))
            if presence:
                _emit_presence(sink, headers)
            return
    received: list[str] = []
    words: list[tuple[str, bytes]] = []  # (text, prefix), hashed together at the end
    has_subject = False
    for name, value in headers:
        plan = _plan(name, selected_only)
        if plan is None:
            continue
        kind, prefix, is_address, is_whole_value, encoded_prefix = plan
        if kind is _RECEIVED:
            received.append(value)
            continue
        if kind is _MESSAGE_ID:
            sink.update(_message_id_tokens(value))
            continue
        words.append((value.lower() if fold_case else value, encoded_prefix))
        if is_address:
            sink.update(_address_tokens(prefix, value))
        elif is_whole_value:
            sink.add(_whole_value_token(prefix, value))
        if kind is _SUBJECT:
            has_subject = True
            sink.update(_subject_shape(value))
    if words:
        sink.prefixed_words(words)
    if received:
        sink.received(" ".join(received))
    if presence:
        _emit_presence(sink, headers)
    if not has_subject:
        sink.add("header:no-subject")


def _emit_presence(sink: StringSink, headers: list[tuple[str, str]]) -> None:
    """Which headers a message has, and how many of each (the header_presence option)."""
    counts = Counter(name for name, _ in headers if not name.startswith(IGNORED_PREFIXES))
    sink.update(f"header:{name}:{min(count, 3)}" for name, count in counts.items())


_WORDS, _SUBJECT, _RECEIVED, _MESSAGE_ID = "words", "subject", "received", "message-id"


@functools.lru_cache(maxsize=1024)
def _plan(name: str, selected_only: bool) -> tuple[str, str, bool, bool, bytes] | None:
    """What a header of this name gives: None (not read), or (kind, token prefix, is an
    address header, is read whole, the prefix's UTF-8 for `prefixed_words`). Worked out
    once a name: a message has ~24 headers,
    and these checks one by one were a quarter of the header tokens' time."""
    if selected_only and name not in SELECTED_HEADERS:
        return None  # (no filter's header is selected)
    if name.startswith(IGNORED_PREFIXES):
        return None
    if name in IGNORED_HEADERS:
        return (_MESSAGE_ID, "", False, False, b"") if name == "message-id" else None
    if name == "received":
        return (_RECEIVED, "", False, False, b"")
    kind = _SUBJECT if name == "subject" else _WORDS
    prefix = name + ":"
    return (kind, prefix, name in ADDRESS_HEADERS, name in WHOLE_VALUE_HEADERS,
            prefix.encode("utf-8", "surrogatepass"))


# The selected headers as the C core's header_keys reads them: name -> (kind, flags,
# prefix as UTF-8, prefix), flags 1 for an address header and 2 for one read whole.
_C_KINDS = {_WORDS: 0, _SUBJECT: 1, _RECEIVED: 2, _MESSAGE_ID: 3}
_C_ADDRESS, _C_WHOLE_VALUE = 1, 2
_C_PLANS: dict[str, HeaderPlan] = {
    name: (_C_KINDS[plan[0]], _C_ADDRESS * plan[2] | _C_WHOLE_VALUE * plan[3], plan[4], plan[1])
    for name in sorted(SELECTED_HEADERS) if (plan := _plan(name, True)) is not None}


# Mail repeats itself: the same senders and recipients come back message after message
# (a third of the corpus's address header values are distinct), so an address header's
# tokens are remembered; the memory is bounded by maxsize.
@functools.lru_cache(maxsize=4096)
def _address_tokens(prefix: str, value: str) -> frozenset[str]:
    out = set()
    if "@" in value:
        for user, domain in EMAIL.findall(value):
            domain = domain.lower()
            out.add(f"{prefix}addr:{user.lower()}@{domain}")
            out.add(f"{prefix}domain:{domain}")
    if not out:
        out.add(prefix + "no-address")
    return frozenset(out)


# Content-Type, X-Mailer, MIME-Version and the like repeat from message to message
# (86-100% of the corpus's values of each were seen in an earlier message)
@functools.lru_cache(maxsize=4096)
def _whole_value_token(prefix: str, value: str) -> str:
    return prefix + "=" + _SPACE.sub(" ", value.strip().lower())[:80]


def _message_id_tokens(value: str) -> set[str]:
    match = _MESSAGE_ID_DOMAIN.search(value)
    if match is None:
        return {"message-id:no-domain"}
    domain = match.group(1).lower()
    return {"message-id:@" + domain, "message-id:@" + ".".join(domain.split(".")[-2:])}


def _subject_shape(value: str) -> set[str]:
    out = set()
    letters = len(_LETTERS.findall(value[:200]))
    if letters >= 8 and len(_UPPER.findall(value[:200])) / letters > 0.7:
        out.add("subject:shape:upper")
    if "!" in value:
        out.add("subject:shape:bang")
    if "   " in value:
        out.add("subject:shape:spaced")
    return out
