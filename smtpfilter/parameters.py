"""MAIL and RCPT parameters that aiosmtpd does not know, and that reach us behind
Postfix: delivery status notification requests (RFC 3461: MAIL's RET and ENVID, RCPT's
NOTIFY and ORCPT), and MAIL's AUTH (RFC 4954).

aiosmtpd answers 555 to a command that carries any of them. Behind Postfix
(smtpd_proxy_filter) the client's MAIL command is passed to us as it came, so every
message whose sender asked for a notification, or whose client named its
authenticated sender (AUTH=<>, as Exim does), was refused for good. And aiosmtpd
upper-cases the parameters it does keep, while ENVID and ORCPT must reach the next hop
unchanged: the sender matches the notifications it gets back by them.

So the server takes these parameters out of the command before aiosmtpd reads it
(`take`), checks them, and keeps the DSN ones on the envelope (`DsnRequest`). The relay
gives those to a next hop that offers DSN; one that does not (qmail) gets the message
without them, as a relaying MTA does (RFC 3461 4.1). AUTH is checked and dropped: the
next hop trusts us as a relay client, not as the sender's authenticator (RFC 4954 5).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAIL_PARAMETERS = frozenset({"RET", "ENVID", "AUTH"})
RCPT_PARAMETERS = frozenset({"NOTIFY", "ORCPT"})
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+")  # RFC 3461 4
_ADDRESS_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_NOTIFY_EVENTS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
ENVID_MAX = 100  # RFC 3461 4.4
ORCPT_MAX = 500  # RFC 3461 4.2
AUTH_MAX = 500  # (RFC 4954 sets none: an address in xtext, as ORCPT's)
SYNTAX_ERROR = "501 5.5.4 Syntax error in parameters"


def xtext(value: str) -> str:
    """RFC 3461's xtext (DSN and XFORWARD values): printable ASCII but '+' and '=' as
    itself, every other byte as +XX. A byte that was not UTF-8 where the client sent it
    (a HELO name with \xff, which the server keeps as a surrogate) goes as that byte."""
    return "".join(char if "!" <= char <= "~" and char not in "+=" else
                   "".join(f"+{byte:02X}" for byte in _utf8(char)) for char in value)


def _utf8(char: str) -> bytes:
    try:
        return char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # (a surrogate no byte stands for)
        return b"?"


def unxtext(value: str) -> str:
    """What an xtext value says (`+2B` is '+'); a '+' not followed by two hex digits is
    kept as it is, and bytes that are not UTF-8 as U+FFFD. A value that would decode to
    a control character (a CR or LF, which could end a header we write it into) is kept
    as it came."""
    if "+" not in value:
        return value
    decoded = re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)
    if not decoded.isascii():
        decoded = decoded.encode("latin-1", "replace").decode("utf-8", "replace")
    return value if any(ord(char) < 32 or ord(char) == 127 for char in decoded) else decoded


def dsn_only(taken: tuple[str, ...]) -> tuple[str, ...]:
    """The DSN parameters among those `take` took from MAIL (AUTH is not passed on)."""
    return tuple(parameter for parameter in taken if not parameter.startswith("AUTH="))


@dataclass
class DsnRequest:
    """What the client asked: MAIL's parameters, and each accepted recipient's, in the
    order of envelope.rcpt_tos (an empty tuple for one that asked nothing)."""

    mail: tuple[str, ...] = ()
    recipients: list[tuple[str, ...]] = field(default_factory=list)

    def for_recipient(self, index: int) -> tuple[str, ...]:
        return self.recipients[index] if index < len(self.recipients) else ()

    def wants_success(self) -> bool:
        """Whether some recipient asked to hear of its delivery (NOTIFY=SUCCESS)."""
        return any(p.upper().startswith("NOTIFY=") and "SUCCESS" in p.upper()
                   for params in self.recipients for p in params)


def take(command: str, arg: str, names: frozenset[str],
         getaddr: Callable[[str], tuple[str | None, str | None]]
         ) -> tuple[str, tuple[str, ...], str | None]:
    """Split a MAIL or RCPT argument (`FROM:<a@b> RET=HDRS SIZE=10`) into the argument
    without the parameters `names`, which aiosmtpd then reads as before, and those
    parameters as the client wrote them (names in capitals); or give the 501 reply that
    refuses a malformed one. An argument that aiosmtpd will refuse anyway (no address,
    bad syntax) comes back as it was, so that its reply is aiosmtpd's own. `getaddr` is
    the server's address parser."""
    keyword = "FROM:" if command == "MAIL" else "TO:"
    upper = arg.upper()
    if not upper.startswith(keyword) or not any(name in upper for name in names):
        return arg, (), None  # (the usual command: aiosmtpd parses the address, once)
    stripped = arg[len(keyword):].strip()
    address, rest = getaddr(stripped)
    if not address or rest is None or not stripped.endswith(rest):
        return arg, (), None
    head = stripped[:len(stripped) - len(rest)]
    if "(" in head and any(name in head[head.index("("):].upper() for name in names):
        # the address parser read "(" as the start of an RFC 5322 comment, which SMTP
        # has not, and swallowed what may be our parameters ("<a@b> ( RET=HDRS"):
        # aiosmtpd would take the command and the request would be lost without a word
        return arg, (), SYNTAX_ERROR
    kept, taken, seen = [], [], set()
    for parameter in rest.split():
        name, equals, value = parameter.partition("=")
        name = name.upper()
        if name not in names:
            kept.append(parameter)
            continue
        if name in seen or not equals or not _valid(name, value):
            return arg, (), SYNTAX_ERROR
        seen.add(name)
        taken.append(f"{name}={value}")
    if not taken:
        return arg, (), None
    return " ".join([keyword + head.rstrip(), *kept]), tuple(taken), None


def _valid(name: str, value: str) -> bool:
    if name == "RET":
        return value.upper() in ("FULL", "HDRS")
    if name == "ENVID":
        return len(value) <= ENVID_MAX and _XTEXT.fullmatch(value) is not None
    if name == "AUTH":  # "<>" or the authenticated sender, in xtext
        return len(value) <= AUTH_MAX and _XTEXT.fullmatch(value) is not None
    if name == "NOTIFY":
        events = value.upper().split(",")
        if events == ["NEVER"]:
            return True
        return len(set(events)) == len(events) and all(e in _NOTIFY_EVENTS for e in events)
    if name == "ORCPT":  # addr-type ";" xtext (RFC 6533's utf-8 type included)
        address_type, semicolon, address = value.partition(";")
        return (len(value) <= ORCPT_MAX and bool(semicolon)
                and _ADDRESS_TYPE.fullmatch(address_type) is not None
                and bool(address) and all(ord(c) > 32 and ord(c) != 127 for c in address))
    return False
