"""Enhanced status codes (RFC 2034, RFC 3463) on the replies `serve` sends, as Postfix
writes them: "250 2.1.5 OK" where aiosmtpd said "250 OK".

An MTA that sends to us puts the enhanced code of our refusal in the bounce it writes
(its Status: field, RFC 3464), and mail programs and log readers sort failures by it:
5.5.x the client's fault, 5.7.x policy, 4.x.x try again. Our own refusals carry one;
aiosmtpd's replies ("503 Error: need RCPT command", "221 Bye") and a next hop's that
has none are given one here, so that EHLO can offer ENHANCEDSTATUSCODES, whose offer
binds the server to a code on every 2xx, 4xx and 5xx reply but the greeting and the
answers to HELO and EHLO (RFC 2034 3)."""

from __future__ import annotations

import re

# a 2xx, 4xx or 5xx reply line with no enhanced code after its code: "250 OK", "221"
_UNCODED = re.compile(r"([245])\d\d(?:[ -]|$)(?![245]\.\d{1,3}\.\d{1,3}(?: |$))")

# what aiosmtpd's and a next hop's uncoded replies mean, in RFC 3463's terms; any other
# code gets its class's "other or undefined" status, X.0.0
_BY_REPLY = {
    "500": "5.5.2",  # command not recognised, or a line too long: a syntax error
    "501": "5.5.4",  # the command's arguments are wrong
    "502": "5.5.1",  # command not implemented here
    "503": "5.5.1",  # commands out of order
    "504": "5.5.4",  # a parameter not implemented
    "530": "5.7.0",  # TLS (or a login) first: a security policy
    "552": "5.3.4",  # a message too big
    "555": "5.5.4",  # MAIL or RCPT parameters not known
    "454": "4.7.0",  # TLS not available
}
# qmail's way: the code at the end of the text, "553 sorry, that domain isn't in my list
# of allowed rcpthosts (#5.7.1)"; a next hop's own code beats a guess from the reply code
_QMAIL_CODE = re.compile(r"\(#([245]\.\d{1,3}\.\d{1,3})\)")
# a sender or a recipient taken (X.1.0 other address status; X.1.5 destination valid),
# as Postfix says it
_TAKEN = {"MAIL": "2.1.0", "RCPT": "2.1.5"}
# commands whose answers carry none (RFC 2034 3)
UNCODED_COMMANDS = frozenset({"HELO", "EHLO"})


def with_enhanced_code(reply: str, command: str | None) -> str:
    """The reply with an enhanced code after the code of each line that has none; a
    reply to `command` (None: no command, as the greeting) that takes none is unchanged."""
    if command in UNCODED_COMMANDS or (command is None and reply.startswith("220")):
        return reply
    if "\r\n" in reply:
        return "\r\n".join(with_enhanced_code(line, command) for line in reply.split("\r\n"))
    if _UNCODED.match(reply) is None:
        return reply
    code = reply[:3]
    text = reply[4:]
    written = _QMAIL_CODE.search(text)
    if written is not None and written.group(1)[0] == code[0]:
        status = written.group(1)
    elif code == "250":
        status = _TAKEN.get(command or "", "2.0.0")
    else:
        status = _BY_REPLY.get(code, f"{code[0]}.0.0")
    return f"{code}{reply[3:4] or ' '}{status}{' ' + text if text else ''}"
