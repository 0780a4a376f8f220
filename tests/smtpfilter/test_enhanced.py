"""Enhanced status codes on every reply (smtpfilter/enhanced.py), line by line."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from smtpfilter.enhanced import UNCODED_COMMANDS, with_enhanced_code

COMMANDS = st.sampled_from([None, "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "HELP",
                            "STARTTLS", "AUTH", "HELO", "EHLO"])
CODED = re.compile(r"([245])\d\d([ -])([245])\.\d{1,3}\.\d{1,3}(?: |$)")


def test_aiosmtpds_replies_are_given_the_codes_postfix_gives() -> None:
    assert with_enhanced_code("250 OK", "MAIL") == "250 2.1.0 OK"
    assert with_enhanced_code("250 OK", "RCPT") == "250 2.1.5 OK"
    assert with_enhanced_code("250 OK", "DATA") == "250 2.0.0 OK"
    assert with_enhanced_code("221 Bye", "QUIT") == "221 2.0.0 Bye"
    assert with_enhanced_code("503 Error: need RCPT command", "DATA") == "503 5.5.1 Error: need RCPT command"
    assert with_enhanced_code("501 Syntax: DATA", "DATA") == "501 5.5.4 Syntax: DATA"
    assert with_enhanced_code('500 Error: command "FROB" not recognized', None) == (
        '500 5.5.2 Error: command "FROB" not recognized')
    assert with_enhanced_code("220 Ready to start TLS", "STARTTLS") == "220 2.0.0 Ready to start TLS"
    assert with_enhanced_code("451 try later", "DATA") == "451 4.0.0 try later"  # (a next hop's)
    assert with_enhanced_code("250", "NOOP") == "250 2.0.0"
    assert with_enhanced_code("550-first\r\n550 second", "RCPT") == "550-5.0.0 first\r\n550 5.0.0 second"


def test_a_code_qmail_writes_at_the_end_of_its_text_is_the_one_given() -> None:
    """qmail (SME's MTA, the next hop behind the filter there) writes its enhanced code
    as "(#5.7.1)" at the end of the text; that is what the reply means, not X.0.0."""
    assert with_enhanced_code("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "RCPT") == (
        "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)")
    assert with_enhanced_code("451 qq temporary problem (#4.3.0)", "DATA") == "451 4.3.0 qq temporary problem (#4.3.0)"
    assert with_enhanced_code("250 ok 1733468400 qp 4242", "DATA") == "250 2.0.0 ok 1733468400 qp 4242"
    # one of another class than the reply's is not taken: the reply's own code decides
    assert with_enhanced_code("550 odd (#4.2.2)", "RCPT") == "550 5.0.0 odd (#4.2.2)"


def test_the_greeting_the_answers_to_ehlo_and_coded_replies_are_left_as_they_are() -> None:
    assert with_enhanced_code("220 mail.example.org ESMTP", None) == "220 mail.example.org ESMTP"
    assert with_enhanced_code("250-PIPELINING", "EHLO") == "250-PIPELINING"
    assert with_enhanced_code("250 mail.example.org", "HELO") == "250 mail.example.org"
    assert with_enhanced_code("354 End data with <CR><LF>.<CR><LF>", "DATA") == (
        "354 End data with <CR><LF>.<CR><LF>")
    assert with_enhanced_code("550 5.7.1 refused", "RCPT") == "550 5.7.1 refused"
    assert with_enhanced_code("250 2.0.0 Ok: queued as 4AbC", "DATA") == "250 2.0.0 Ok: queued as 4AbC"


@given(code=st.sampled_from(["2", "4", "5"]).flatmap(
           lambda first: st.integers(0, 99).map(lambda rest: f"{first}{rest:02d}")),
       separator=st.sampled_from([" ", "-"]),
       text=st.text(st.characters(blacklist_characters="\r\n"), max_size=40),
       command=COMMANDS)
def test_each_reply_line_ends_with_one_code_of_its_class_and_its_text_whole(
        code: str, separator: str, text: str, command: str | None) -> None:
    reply = f"{code}{separator}{text}"
    given_code = with_enhanced_code(reply, command)
    if command in UNCODED_COMMANDS or (command is None and code == "220"):
        assert given_code == reply
        return
    match = CODED.match(given_code)
    assert match is not None and match[1] == match[3] == code[0], given_code
    assert given_code.startswith(code + separator)
    if CODED.match(reply) is not None:
        assert given_code == reply  # (a code already there is kept, never doubled)
    else:
        status = given_code[4:].split(" ", 1)[0]
        assert given_code == f"{code}{separator}{status}" + (f" {text}" if text else "")
    assert with_enhanced_code(given_code, command) == given_code  # (once is enough)
