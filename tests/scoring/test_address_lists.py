"""SpamAssassin's recipient lists (welcomelist_to, blocklist_to, more_spam_to,
all_spam_to), the welcomelists a relay vouches for (welcomelist_from_rcvd and its def_
form, welcomelist_allows_relays) and the Subject lists (WelcomeListSubject): held
against Debian's Mail::SpamAssassin on the same rules and messages, then what spamkit
adds (the SMTP envelope's recipients) and what it refuses (malformed lines)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.namedlists import SubjectGlob
from tests.scoring.test_sa_evals import _hits_agree, _message
from tests.scoring.test_spamassassin_rules import require_debian_rules

LIST_RULES = r"""
welcomelist_to        boss@ok.example *@vip.example
whitelist_to          old@ok.example
blocklist_to          spamtrap@ok.example
blacklist_to          oldtrap@ok.example
more_spam_to          more@ok.example
all_spam_to           abuse@ok.example postmaster@*
welcomelist_from_rcvd friend@partner.example partner.example
whitelist_from_rcvd   *@ipfriend.example [192.0.2.7]
welcomelist_from_rcvd *@netfriend.example [192.0.2.0/24]
welcomelist_from_rcvd *@classful.example [192.0.2]
welcomelist_from_rcvd *@travels.example elsewhere.example
welcomelist_allows_relays *@travels.example
welcomelist_from_rcvd *@forged.example elsewhere.example
welcomelist_from_rcvd gone@partner.example partner.example
unwelcomelist_from_rcvd gone@partner.example
def_welcomelist_from_rcvd *@bigco.example example.net
welcomelist_from_rcvd *@compat.example [::192.0.2.0]/120
welcomelist_from_rcvd *@compat-one.example [::192.0.2.7]
welcomelist_from_rcvd *@mapped.example [::ffff:192.0.2.7]
welcomelist_from_rcvd *@v6.example [2001:db8::]/32
welcomelist_from_rcvd *@v4net.example [192.0.2.0]/24
welcomelist_subject   [bug *]
blocklist_subject     make money fast
blacklist_subject     win a ?rize
header TO_WL      eval:check_to_in_welcomelist()
header TO_WL_OLD  eval:check_to_in_whitelist()
header TO_BL      eval:check_to_in_blocklist()
header TO_MORE    eval:check_to_in_more_spam()
header TO_ALL     eval:check_to_in_all_spam()
header FROM_WL    eval:check_from_in_welcomelist()
header FROM_DEF   eval:check_from_in_default_welcomelist()
header FORGED_WL  eval:check_forged_in_welcomelist()
header FORGED_DEF eval:check_forged_in_default_welcomelist()
header SUBJ_WL    eval:check_subject_in_welcomelist()
header SUBJ_BL    eval:check_subject_in_blocklist()
"""


def _via(host: bytes, ip: bytes, recipient: bytes = b"") -> bytes:
    """A Received line of a relay with its reverse name, optionally "for" a recipient."""
    return (b"Received: from " + host + b" (" + host + b" [" + ip + b"]) by mx.ok.example with ESMTP id 7"
            + (b" for <" + recipient + b">" if recipient else b"") + b"; Mon, 2 Nov 2026 10:00:00 +0000\n")


_PARTNER = _via(b"out.partner.example", b"198.51.100.5")
_NET = _via(b"mail.example.net", b"192.0.2.7")
_V6 = _via(b"mail6.example.net", b"IPv6:2001:db8::5")

LIST_MESSAGES = {
    "to welcome": _message(b"From: a@x.example\nTo: Boss <boss@ok.example>\n"),
    "cc glob": _message(b"From: a@x.example\nTo: a@b.example\nCc: c@d.example, z@VIP.example\n"),
    "old spelling": _message(b"From: a@x.example\nTo: old@ok.example\n"),
    "spamtrap": _message(b"From: a@x.example\nTo: spamtrap@ok.example\n"),
    "old trap": _message(b"From: a@x.example\nTo: oldtrap@ok.example\n"),
    "more, case": _message(b"From: a@x.example\nTo: More@OK.example\n"),
    "received for": _message(b"From: a@x.example\nTo: list@ok.example\n",
                             received=_via(b"mail.example.net", b"192.0.2.7", b"abuse@ok.example")),
    "received for, no domain": _message(b"From: a@x.example\nTo: list@ok.example\n",
                                        received=_via(b"mail.example.net", b"192.0.2.7", b"postmaster@localhost")),
    "received for, a domain": _message(b"From: a@x.example\nTo: list@ok.example\n",
                                       received=_via(b"mail.example.net", b"192.0.2.7", b"postmaster@ok.example")),
    "delivered-to": _message(b"From: a@x.example\nTo: list@ok.example\nDelivered-To: abuse@ok.example\n"),
    "resent first": _message(b"From: a@x.example\nTo: abuse@ok.example\nResent-To: other@x.example\n"),
    "partner": _message(b"From: Friend <friend@partner.example>\nTo: a@ok.example\n", received=_PARTNER),
    "partner, elsewhere": _message(b"From: friend@partner.example\nTo: a@ok.example\n", received=_NET),
    "partner, envelope header": _message(b"From: a@x.example\nX-Envelope-From: friend@partner.example\n"
                                         b"To: a@ok.example\n", received=_PARTNER),
    "by address": _message(b"From: x@ipfriend.example\nTo: a@ok.example\n", received=_NET),
    "by address, elsewhere": _message(b"From: x@ipfriend.example\nTo: a@ok.example\n", received=_PARTNER),
    "by network": _message(b"From: x@netfriend.example\nTo: a@ok.example\n", received=_NET),
    "by prefix": _message(b"From: x@classful.example\nTo: a@ok.example\n", received=_NET),
    "allowed relay": _message(b"From: x@travels.example\nTo: a@ok.example\n", received=_NET),
    "forged": _message(b"From: x@forged.example\nTo: a@ok.example\n", received=_NET),
    "taken off": _message(b"From: gone@partner.example\nTo: a@ok.example\n", received=_PARTNER),
    "default": _message(b"From: x@bigco.example\nTo: a@ok.example\n", received=_NET),
    "default, elsewhere": _message(b"From: x@bigco.example\nTo: a@ok.example\n", received=_PARTNER),
    "no relay": _message(b"From: friend@partner.example\nTo: a@ok.example\n", received=b""),
    # an IPv4 relay in an IPv4-compatible IPv6 entry (NetAddr::IP reads 192.0.2.7 as
    # ::192.0.2.7), but not in an IPv4-mapped one; IPv6 relays in IPv6 and IPv4 entries
    "compatible network": _message(b"From: x@compat.example\nTo: a@ok.example\n", received=_NET),
    "compatible address": _message(b"From: x@compat-one.example\nTo: a@ok.example\n", received=_NET),
    "mapped address": _message(b"From: x@mapped.example\nTo: a@ok.example\n", received=_NET),
    "ipv6 network": _message(b"From: x@v6.example\nTo: a@ok.example\n", received=_V6),
    "ipv6 relay, ipv4 network": _message(b"From: x@v4net.example\nTo: a@ok.example\n", received=_V6),
    "subject glob": _message(b"From: a@x.example\nTo: a@ok.example\nSubject: Re: [Bug 1234] crash on start\n"),
    "subject case": _message(b"From: a@x.example\nTo: a@ok.example\nSubject: MAKE MONEY FAST today\n"),
    "subject one character": _message(b"From: a@x.example\nTo: a@ok.example\nSubject: you win a prize\n"),
    "subject near": _message(b"From: a@x.example\nTo: a@ok.example\nSubject: make money slowly [bug\n"),
}


def test_lists_hit_as_in_spamassassin(tmp_path: Path) -> None:
    require_debian_rules()
    theirs = _hits_agree(tmp_path, LIST_RULES, LIST_MESSAGES)
    # each case turns on what its name says
    assert theirs["to welcome"] == {"TO_WL", "TO_WL_OLD"} == theirs["cc glob"] == theirs["old spelling"]
    assert theirs["spamtrap"] == {"TO_BL"} == theirs["old trap"]
    assert theirs["more, case"] == {"TO_MORE"}
    assert theirs["received for"] == {"TO_ALL"} == theirs["delivered-to"] == theirs["received for, a domain"]
    assert theirs["received for, no domain"] == set() and theirs["resent first"] == set()
    assert theirs["partner"] == {"FROM_WL"} == theirs["partner, envelope header"]
    assert theirs["partner, elsewhere"] == {"FORGED_WL"} == theirs["forged"] == theirs["by address, elsewhere"]
    assert theirs["by address"] == {"FROM_WL"} == theirs["by network"] == theirs["by prefix"]
    assert theirs["allowed relay"] == set() == theirs["taken off"] == theirs["no relay"]
    assert theirs["default"] == {"FROM_DEF"} and theirs["default, elsewhere"] == {"FORGED_DEF"}
    assert theirs["compatible network"] == {"FROM_WL"} == theirs["compatible address"] == theirs["ipv6 network"]
    assert theirs["mapped address"] == {"FORGED_WL"} == theirs["ipv6 relay, ipv4 network"]
    assert theirs["subject glob"] == {"SUBJ_WL"} and theirs["subject near"] == set()
    assert theirs["subject case"] == {"SUBJ_BL"} == theirs["subject one character"]


def _hits(rules: str, raw: bytes, tmp_path: Path, recipients: tuple[str, ...] = ()) -> set[str]:
    (tmp_path / "lists.cf").write_text(rules, encoding="utf-8")
    ruleset = load_rules([tmp_path / "lists.cf"], builtin=False)
    assert not ruleset.report.errors, ruleset.report.errors
    context = MessageContext(raw, parse_message(raw), recipients=recipients)
    counts, _ = ruleset.match_counts(context, 0)
    return set(counts)


def test_the_envelope_recipients_count(tmp_path: Path) -> None:
    """The SMTP filter knows who a message is for; a Bcc recipient is not in its headers."""
    rules = "all_spam_to abuse@ok.example\nheader TO_ALL eval:check_to_in_all_spam()\n"
    raw = _message(b"From: a@x.example\nTo: list@ok.example\n")
    assert _hits(rules, raw, tmp_path) == set()
    assert _hits(rules, raw, tmp_path, recipients=("<Abuse@OK.example>",)) == {"TO_ALL"}


def test_the_builtin_welcomelist_rule_reads_welcomelist_from_rcvd(tmp_path: Path) -> None:
    """spamkit's own USER_IN_WHITELIST (check_from_in_whitelist) hits for an entry whose
    relay handed the mail over, and not for the same sender through another relay."""
    rules = "welcomelist_from_rcvd friend@partner.example partner.example\n"
    (tmp_path / "local.cf").write_text(rules, encoding="utf-8")
    ruleset = load_rules([tmp_path / "local.cf"], builtin=True)
    for received, hit in ((_PARTNER, True), (_NET, False)):
        raw = _message(b"From: friend@partner.example\nTo: a@ok.example\n", received=received)
        counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
        assert ("USER_IN_WHITELIST" in counts) is hit


@pytest.mark.parametrize("line, words", [
    ("welcomelist_to", "needs at least one address"),
    ("all_spam_to   ", "needs at least one address"),
    ("welcomelist_from_rcvd friend@partner.example", "takes an address and the domain"),
    ("whitelist_from_rcvd a@b.example b.example c.example", "takes an address and the domain"),
    ("unwelcomelist_from_rcvd", "needs at least one address"),
    ("welcomelist_subject", "needs the text of a Subject"),
])
def test_a_malformed_line_is_named(tmp_path: Path, line: str, words: str) -> None:
    (tmp_path / "local.cf").write_text(f"all_spam_to abuse@ok.example\n{line}\n", encoding="utf-8")
    report = load_rules([tmp_path / "local.cf"], builtin=False).report
    assert len(report.errors) == 1 and "local.cf:2" in report.errors[0] and words in report.errors[0]


def test_a_subject_glob_is_linear() -> None:
    """Each run between stars found where it first fits, line by line: the answers of
    SpamAssassin's regex, without its retries from every position."""
    cases = {("a*b", "xxaxxbx"): True, ("a*b", "b then a"): False, ("a*b", "a\nb"): False,
             ("win a ?rize", "win a prize"): True, ("win a ?rize", "win a rize"): False,
             ("*", "anything"): True, ("[bug *]", "re: [bug 7] x"): True, ("[bug *]", "[bug 7"): False,
             ("x?y*z", "x\nyz"): False, ("a*a*a", "aa"): False, ("a*a*a", "aaa"): True}
    for (text, subject), expected in cases.items():
        assert SubjectGlob(text).search(subject) is expected, (text, subject)
    hostile = "a" * 200_000
    started = time.perf_counter()
    assert not SubjectGlob("a*b").search(hostile) and not SubjectGlob("a*a*c*d").search(hostile)
    assert time.perf_counter() - started < 2.0  # (the regex form: minutes)
