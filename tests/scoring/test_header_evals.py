"""SpamAssassin's header and relay evals, its registry boundaries (util_rb_*), the
ALL-TRUSTED / ALL-UNTRUSTED headers, mimeheader rules, rawbody's chunks and `multiple`
counts, each on messages made to hit and to miss, as SpamAssassin 4.0.1 reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.context import display_name
from spamkit.rules.evals.freemail import bulk_envelope, mailto_links, role_address
from spamkit.rules.registry import Registry, RegistryLists
from spamkit.rules.relays import Relays, parse_received

RULES = r"""
util_rb_tld com org net uk us ie
util_rb_2tld co.uk
util_rb_3tld demon.co.uk
header ENV_MATCH   eval:check_for_matching_env_and_hdr_from()
header USER_IN_SUBJ eval:check_for_to_in_subject('user')
header ADDR_IN_SUBJ eval:check_for_to_in_subject('address')
header TEMPLATE    eval:check_unresolved_template()
header RATWARE_ID  eval:check_ratware_name_id()
header RATWARE_EFROM eval:check_ratware_envelope_from()
header FAKE_AOL    eval:check_for_fake_aol_relay_in_rcvd()
header FORGED_TRAIL eval:check_for_forged_received_trail()
header RP_MATCHES  eval:check_mailfrom_matches_rcvd()
header UNPARSEABLE eval:check_relays_unparseable()
header RELAYED_EXT ALL-EXTERNAL =~ /(?:^|\n)Received:\s.+\nReceived:\s/s
header TRUSTED_SIDE ALL-TRUSTED =~ /^X-Inside: yes$/m
mimeheader TEXT_PART Content-Type =~ /text\/\w+/i
mimeheader PART_START Content-Type =~ /^text\/plain/
mimeheader NAME_EXE Content-Type =~ /name="[^"]*\.exe"/
rawbody AFTER_HTML /<\/html>\s*[a-z0-9]/i
rawbody HREF /<a\s+href=/i
tflags  HREF multiple maxhits=3
meta    MANY_HREFS HREF > 2
body    WORD_FREE /\bfree\b/i
tflags  WORD_FREE multiple maxhits=5
meta    FREE_TWICE WORD_FREE == 2
header  LCASE_HDRS ALL =~ /^[a-z]+-?[a-z]*:/m
tflags  LCASE_HDRS multiple maxhits=3
meta    LCASE_MANY LCASE_HDRS >= 2
"""


def _hits(tmp_path: Path, raw: bytes) -> set[str]:
    path = tmp_path / "evals.cf"
    path.write_text(RULES)
    ruleset = load_rules([path], builtin=False)
    assert not ruleset.report.errors and not ruleset.report.skipped, ruleset.report.as_json()
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)))
    return set(counts)


def _hop(text: str) -> bytes:
    return f"Received: from {text}; Tue, 25 Nov 2026 10:00:00 +0000\n".encode()


OUTSIDE = _hop("mail.shop.example.co.uk (mail.shop.example.co.uk [198.51.100.7]) by mx.example.org "
               "(Postfix) with ESMTP id A1")


def test_registry_boundaries_read_from_the_rule_files() -> None:
    lists = RegistryLists()
    lists.add("util_rb_tld", "com uk us")
    lists.add("util_rb_2tld", "co.uk")
    lists.add("util_rb_3tld", "demon.co.uk")
    registry = Registry(lists)
    assert registry.split_domain("www.mail.example.co.uk") == ("www.mail", "example.co.uk")
    assert registry.trim_domain("a.b.example.com") == "example.com"
    assert registry.trim_domain("host.example.demon.co.uk") == "example.demon.co.uk"
    assert registry.trim_domain("www.city.ny.us") == "www.city.ny.us"  # RFC 1480's states
    assert registry.trim_domain("..Example.COM.") == "example.com"
    assert registry.is_domain_valid("example.com") and not registry.is_domain_valid("example.invalid")
    assert not registry.is_domain_valid("com")
    lists.clear()
    assert Registry(lists).trim_domain("mail.example.co.uk") == "co.uk"
    with pytest.raises(ValueError, match="two labels"):
        RegistryLists().add("util_rb_2tld", "co.uk com")


def test_a_misshapen_util_rb_line_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tlds.cf"
    path.write_text("util_rb_tld com\nutil_rb_3tld co.uk\n")
    report = load_rules([path], builtin=False).report
    assert report.errors == [f"{path}:2: util_rb_3tld takes domains of three labels each, separated by spaces"]


def test_sender_and_recipient_evals(tmp_path: Path) -> None:
    own = b"Return-Path: <Ann@shop.example>\n" + OUTSIDE + b"From: ann@shop.example\nTo: bob@example.org\n"
    assert "ENV_MATCH" in _hits(tmp_path, own + b"\nx\n")
    listed = b"Return-Path: <bounce@lists.example>\n" + OUTSIDE + b"From: ann@shop.example\n"
    assert "ENV_MATCH" not in _hits(tmp_path, listed + b"\nx\n")
    to_bob = OUTSIDE + b"To: bob@example.org\n"
    assert "USER_IN_SUBJ" in _hits(tmp_path, to_bob + b"Subject: bob: your invoice\n\nx\n")
    assert "USER_IN_SUBJ" in _hits(tmp_path, to_bob + b"Subject: Re: bob\n\nx\n")
    assert "USER_IN_SUBJ" not in _hits(tmp_path, to_bob + b"Subject: bobby's invoice\n\nx\n")
    # the user name before punctuation is matched in its own case only
    assert "USER_IN_SUBJ" not in _hits(tmp_path, to_bob + b"Subject: BOB: your invoice\n\nx\n")
    assert "ADDR_IN_SUBJ" in _hits(tmp_path, to_bob + b"Subject: for bob@example.org only\n\nx\n")


def test_mail_merge_and_ratware_marks(tmp_path: Path) -> None:
    assert "TEMPLATE" in _hits(tmp_path, OUTSIDE + b"X-Campaign: %CAMPAIGN_ID\n\nx\n")
    assert "TEMPLATE" not in _hits(tmp_path, OUTSIDE + b"Subject: 50%OFF\n\nx\n")
    ratware = (OUTSIDE + b"Message-ID: <ABCDEFGHIJKLMNOPQRSTUVWXYZAB.ann@shop.example>\n"
               b'From: "Ann" <ann@shop.example>\n\nx\n')
    assert "RATWARE_ID" in _hits(tmp_path, ratware)
    assert "RATWARE_ID" not in _hits(tmp_path, ratware.replace(b"ABCDEFGH", b"abcdefgh"))
    made_up = b"Return-Path: <example.org.bob@bulk.example>\n" + OUTSIDE + b"To: bob@mail.example.org\n\nx\n"
    assert "RATWARE_EFROM" in _hits(tmp_path, made_up)
    srs = b"Return-Path: <SRS0=ab=cd=example.org.bob@fwd.example>\n" + OUTSIDE + b"To: bob@example.org\n\nx\n"
    assert "RATWARE_EFROM" not in _hits(tmp_path, srs)


def test_path_evals(tmp_path: Path) -> None:
    fake_aol = _hop("aol.com (dsl.example.net [198.51.100.44]) by rly-xa01.mx.aol.com with ESMTP id A2")
    assert "FAKE_AOL" in _hits(tmp_path, OUTSIDE + fake_aol + b"\nx\n")
    real_aol = _hop("aol.com (omr.aol.com [198.51.100.45]) by rly-xa01.mx.aol.com (8.8.8/8.8.8/AOL-5.0.0) "
                    "with ESMTP id A3")
    assert "FAKE_AOL" not in _hits(tmp_path, OUTSIDE + real_aol + b"\nx\n")
    # each hop's "by" should be the host the next one saw connect; twice not is forged
    trail = (_hop("a.one.example (a.one.example [198.51.100.1]) by mx.example.org with ESMTP id B1")
             + _hop("b.two.example (b.two.example [198.51.100.2]) by relay.three.example with ESMTP id B2")
             + _hop("c.four.example (c.four.example [198.51.100.3]) by relay.five.example with ESMTP id B3"))
    assert "FORGED_TRAIL" in _hits(tmp_path, trail + b"\nx\n")
    honest = (_hop("a.one.example (a.one.example [198.51.100.1]) by mx.example.org with ESMTP id C1")
              + _hop("b.two.example (b.two.example [198.51.100.2]) by a.one.example with ESMTP id C2")
              + _hop("c.four.example (c.four.example [198.51.100.3]) by b.two.example with ESMTP id C3"))
    assert "FORGED_TRAIL" not in _hits(tmp_path, honest + b"\nx\n")
    # the envelope sender's registered domain is the first untrusted relay's (co.uk is a suffix)
    assert "RP_MATCHES" in _hits(tmp_path, b"Return-Path: <news@example.co.uk>\n" + OUTSIDE + b"\nx\n")
    assert "RP_MATCHES" not in _hits(tmp_path, b"Return-Path: <news@other.co.uk>\n" + OUTSIDE + b"\nx\n")


def test_lines_that_are_no_hop_are_not_unparseable(tmp_path: Path) -> None:
    """SpamAssassin knows many Received formats of a machine handing mail to itself, or
    of an MTA that logs no address; they are no hop, and no sign of a forged path."""
    for line in ("from mail pickup service by mail.example.org with Microsoft SMTPSVC",
                 "from ann by mail.example.org with local (Exim 4.96) id 1abc-0001",
                 "from scv3.example.com (scv3.example.com) by gate.example.com (Content Technologies "
                 "SMTPRS 4.2.1) with ESMTP id <T1@gate.example.com>",
                 "from CATHY.EXAMPLE by CATHY.EXAMPLE (PMDF V4.3-10 #8779) id <01K@CATHY.EXAMPLE>",
                 "from mail.example.com id <B5b8f11e30004>"):
        assert parse_received(line) is False, line
    assert parse_received("from host (198.51.100.1) by areca.example.net") is None  # no "by" word after
    obtuse = parse_received('from dsl.example.net(198.51.100.9), claiming to be "pc.example" via SMTP '
                            "by mail.example.org, id smtpdV82674")
    assert obtuse and (obtuse.ip, obtuse.rdns, obtuse.helo, obtuse.by) == (
        "198.51.100.9", "dsl.example.net", "pc.example", "mail.example.org")
    pickup = b"Received: from mail pickup service by mail.example.org with Microsoft SMTPSVC;" \
             b" Tue, 25 Nov 2026 10:00:00 +0000\n"
    assert "UNPARSEABLE" not in _hits(tmp_path, OUTSIDE + pickup + b"\nx\n")
    assert "UNPARSEABLE" in _hits(tmp_path, OUTSIDE + _hop("nowhere at all") + b"\nx\n")


def test_headers_each_side_of_the_trust_line(tmp_path: Path) -> None:
    inside = _hop("localhost (localhost [127.0.0.1]) by mx.example.org (Postfix) with ESMTP id D1")
    one_hop = inside + b"X-Inside: yes\n" + OUTSIDE + b"X-Below: 1\n\nx\n"
    got = _hits(tmp_path, one_hop)
    assert "TRUSTED_SIDE" in got and "RELAYED_EXT" not in got
    relayed = inside + OUTSIDE + _hop("pc.example (dsl.example.net [198.51.100.50]) by "
                                      "mail.shop.example.co.uk (Postfix) with ESMTP id D2") + b"\nx\n"
    assert "RELAYED_EXT" in _hits(tmp_path, relayed)
    relays = Relays([inside.decode()[10:], OUTSIDE.decode()[10:]])
    assert relays.trusted_lines == 1 and len(relays.untrusted) == 1


def test_mimeheader_tests_each_part_and_the_message_itself(tmp_path: Path) -> None:
    single = OUTSIDE + b"Content-Type: text/plain; charset=us-ascii\n\nx\n"
    assert {"TEXT_PART", "PART_START"} <= _hits(tmp_path, single)
    mixed = (OUTSIDE + b'Content-Type: multipart/mixed; boundary="B"\n\n--B\n'
             b"Content-Type: image/gif\n\nGIF\n--B\n"
             b'Content-Type: text/plain; name="invoice.exe"\n\nhello\n--B--\n')
    got = _hits(tmp_path, mixed)
    # each part on its own: "^text/plain" holds for the second part, not for the joined text
    assert {"TEXT_PART", "PART_START", "NAME_EXE"} <= got
    pictures = OUTSIDE + b'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: image/gif\n\nG\n--B--\n'
    assert not _hits(tmp_path, pictures) & {"TEXT_PART", "PART_START"}


def test_rawbody_rules_read_a_part_whole_and_count_every_match(tmp_path: Path) -> None:
    """SpamAssassin cuts rawbody into pieces of 2-4 kB, not lines: "</html>" then, on the
    next line, more text is one match. `multiple` counts each match (Perl's /g), up to
    maxhits; within one paragraph or line too."""
    html = (OUTSIDE + b"Content-Type: text/html\n\n<html><body><a href=x>1</a> <a href=y>2</a>\n"
            b"<a href=z>3</a> <a href=w>4</a></body></html>\nhttp://after.example/\n")
    counts, _ = _counts(tmp_path, html)
    assert counts.get("AFTER_HTML") == 1
    assert counts.get("HREF") == 3 and "MANY_HREFS" in counts  # four links, maxhits=3
    assert counts.get("WORD_FREE") is None
    plain = OUTSIDE + b"\nIt is free, free of charge.\n"
    counts, _ = _counts(tmp_path, plain)
    assert counts.get("WORD_FREE") == 2 and "FREE_TWICE" in counts
    lower = OUTSIDE + b"x-one: 1\nx-two: 2\nx-three: 3\nx-four: 4\n\nx\n"
    counts, _ = _counts(tmp_path, lower)
    assert counts.get("LCASE_HDRS") == 3 and "LCASE_MANY" in counts


def test_built_in_rawbody_rules_keep_reading_lines(tmp_path: Path) -> None:
    """The built-in rules' scores were fitted one rawbody line at a time."""
    builtin = load_rules()
    assert builtin.rules["HTML_FORM"].builtin_view and builtin.rules["URI_REMOVE_ME"].builtin_view
    raw = OUTSIDE + b"Content-Type: text/html\n\n<html>" + b"x" * 3000 + b"\n<form action=y></form></html>\n"
    context = MessageContext(raw, parse_message(raw))
    assert context.texts("rawbody_lines")[-2].startswith("<form")
    assert len(context.texts("rawbody")) == 1  # 3,030 characters: one piece
    long_part = OUTSIDE + b"\n" + (b"y" * 100 + b"\n") * 100
    pieces = MessageContext(long_part, parse_message(long_part)).texts("rawbody")
    # 10,100 characters: three pieces ending at the first line end past 2,048, then the
    # rest, once no more than 4,096 are left
    assert [len(piece) for piece in pieces] == [2121, 2121, 2121, 3737]
    assert all(piece.endswith("\n") for piece in pieces)
    assert "".join(pieces) == (("y" * 100 + "\n") * 100)


def _counts(tmp_path: Path, raw: bytes) -> tuple[dict[str, int], dict[str, str]]:
    path = tmp_path / "evals.cf"
    path.write_text(RULES)
    return load_rules([path], builtin=False).match_counts(MessageContext(raw, parse_message(raw)))


def test_dates_read_as_spamassassin_reads_them() -> None:
    from calendar import timegm

    from spamkit.rules.sa_dates import parse_date

    def utc(*fields: int) -> int:
        return timegm((*fields, 0, 0, 0))

    assert parse_date("Tue, 10 Sep 2002 04:13:50 -1100") == utc(2002, 9, 10, 15, 13, 50)
    # a Y2K bug's four-digit "0102" is year 102, before 1970: read as 1970; "102" is 2002
    assert parse_date("25 Aug 0102 18:57:52 -0400") == utc(1970, 8, 25, 22, 57, 52)
    assert parse_date("25 Aug 102 18:57:52 -0400") == utc(2002, 8, 25, 22, 57, 52)
    assert parse_date("1 Jan 99 00:00:00 EST") == utc(1999, 1, 1, 5, 0, 0)
    assert parse_date("5 Mar 20 10:00:00 XYZ") == utc(2020, 3, 5, 10, 0, 0)  # unknown zone: UTC
    assert parse_date("31 Apr 2002 25:61:61 +0000") == utc(2002, 5, 1, 23, 59, 59)
    assert parse_date("Sun Sep  8 12:00:00 2002") == utc(2002, 9, 8, 0, 0, 0)  # ctime: no time kept
    assert parse_date("1 Jan 2099 00:00:00 +0000") == utc(2037, 1, 1, 0, 0, 0)
    assert parse_date("no date here") is None and parse_date("0 Jan 2002") is None


def test_date_shift_as_spamassassin_works_it_out(tmp_path: Path) -> None:
    fetched = (b"Received: from localhost (localhost [127.0.0.1]) by mail.example.org (Postfix)"
               b" with ESMTP id A1; Tue, 25 Nov 2026 22:00:00 +0000\n"
               b"Received: from pop.example.net [192.0.2.5] by localhost with POP3 (fetchmail-6.4.37)"
               b" for ann@localhost (single-drop); Tue, 25 Nov 2026 22:00:00 +0000\n"
               b"Received: from mx.example.net (mx.example.net [192.0.2.1]) by pop.example.net"
               b" (Postfix) with ESMTP id A2; Tue, 25 Nov 2026 10:00:00 +0000\n")
    rules = tmp_path / "dates.cf"
    rules.write_text("header PAST_06_12 eval:check_for_shifted_date('-12', '-6')\n"
                     "header NEAR eval:check_for_shifted_date('-3', '3')\n")
    ruleset = load_rules([rules], builtin=False)

    def hits(raw: bytes) -> set[str]:
        return set(ruleset.match_counts(MessageContext(raw, parse_message(raw)))[0])

    # the fetch and its local handover are not hops: the Date is 8 hours before the last one
    assert hits(fetched + b"Date: Tue, 25 Nov 2026 02:00:00 +0000\n\nx\n") == {"PAST_06_12"}
    # Resent-Date, where there is one, is the date compared
    assert hits(fetched + b"Date: Tue, 25 Nov 2026 02:00:00 +0000\n"
                b"Resent-Date: Tue, 25 Nov 2026 10:30:00 +0000\n\nx\n") == {"NEAR"}
    # no date at all: the shift is 0, as in SpamAssassin
    assert hits(fetched + b"\nx\n") == {"NEAR"}


def test_text_after_the_closing_delimiter(tmp_path: Path) -> None:
    rules = tmp_path / "epilogue.cf"
    rules.write_text("body EPILOGUE eval:check_msg_parse_flags('mime_epilogue_exists')\n"
                     "body NOT_KEPT eval:check_msg_parse_flags('truncated_header')\n")
    ruleset = load_rules([rules], builtin=False)
    assert set(ruleset.rules) == {"EPILOGUE"} and ruleset.report.skipped == {"eval not implemented": 1}
    mime = OUTSIDE + b'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\nhi\n--B--\n'

    def hits(raw: bytes) -> set[str]:
        message = parse_message(raw)
        assert not any("epilogue" in fact for fact in message.facts)  # (Bayes does not see it)
        return set(ruleset.match_counts(MessageContext(raw, message))[0])

    assert hits(mime + b"buy now\n") == {"EPILOGUE"}
    assert hits(mime + b"\n.\n  \n") == set()  # white space and dots are no epilogue


FREEMAIL_RULES = """
util_rb_tld com net org example
freemail_domains freemail.example hotmail.co.?? *.webmail.example
header FM_FROM   eval:check_freemail_from()
header FM_RT_ADDR eval:check_freemail_header('Reply-To:addr')
header FM_REPLYTO eval:check_freemail_replyto('replyto')
header FM_REPLY  eval:check_freemail_replyto('reply')
"""


def _freemail_hits(tmp_path: Path, raw: bytes) -> set[str]:
    path = tmp_path / "freemail.cf"
    path.write_text(FREEMAIL_RULES)
    ruleset = load_rules([path], builtin=False)
    return set(ruleset.match_counts(MessageContext(raw, parse_message(raw)))[0])


def test_freemail_as_the_plugin_reads_it(tmp_path: Path) -> None:
    # every From-like address counts, and "?" is one character
    assert "FM_FROM" in _freemail_hits(tmp_path, OUTSIDE + b"From: a@shop.example\n"
                                       b"X-Envelope-From: <b@hotmail.co.uk>\n\nx\n")
    # role and bounce addresses are never freemail
    assert "FM_FROM" not in _freemail_hits(tmp_path, OUTSIDE + b"From: support@freemail.example\n\nx\n")
    assert "FM_RT_ADDR" in _freemail_hits(tmp_path, OUTSIDE + b"Reply-To: Bob <bob@x.webmail.example>\n\nx\n")
    # reply: a freemail From, and another freemail address to write to in the body
    ann = OUTSIDE + b"From: ann@freemail.example\n"
    assert "FM_REPLY" in _freemail_hits(tmp_path, ann + b"\nWrite to carol@freemail.example today.\n")
    assert "FM_REPLY" in _freemail_hits(tmp_path, ann + b"Content-Type: text/html\n\n"
                                        b'<a href="mailto:carol@freemail.example">here</a>\n')
    # one quoted in a header ("<x>", "x Subject:"), or in a link, is not one to write to;
    # one before "fax:" or "phone:" is
    assert "FM_REPLY" not in _freemail_hits(tmp_path, ann + b"\nFrom: Carol <carol@freemail.example>\n")
    assert "FM_REPLY" not in _freemail_hits(tmp_path, ann + b"\ncarol@freemail.example Subject: hi\n")
    assert "FM_REPLY" in _freemail_hits(tmp_path, ann + b"\ncarol@freemail.example fax: 1\n")
    assert "FM_REPLY" not in _freemail_hits(tmp_path, ann + b"\nhttp://x.example/?u=carol@freemail.example\n")
    # five addresses in the body make a list or a newsletter: not compared
    many = b" ".join(b"p%d@shop.example" % n for n in range(4)) + b" carol@freemail.example\n"
    assert "FM_REPLY" not in _freemail_hits(tmp_path, ann + b"\n" + many)
    # From and Reply-To both freemail and different; not when the envelope is a list's
    both = OUTSIDE + b"From: ann@freemail.example\nReply-To: dan@hotmail.co.uk\n"
    assert "FM_REPLYTO" in _freemail_hits(tmp_path, both + b"\nx\n")
    listed = b"Return-Path: <news-bounces@lists.example>\n" + both + b"\nx\n"
    assert "FM_REPLYTO" not in _freemail_hits(tmp_path, listed)


# the FreeMail plugin's own patterns, whole: the reference for role_address and bulk_envelope
_PLUGIN_ROLE = re.compile(
    r"^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master|undisclosed.*"
    r"|request-[a-f0-9]{16}|bounced?-"
    r"|[a-f0-9]{8}(?:\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})|.+=.+=.+)@", re.IGNORECASE)
_PLUGIN_BULK = re.compile(
    r"(?:^(?:post|host|domain)master|^double-bounce|^(?:sentto|owner|return|(?:gr)?bounced?)-.+"
    r"|-(?:request|bounces?|admin|owner)|\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)|.+=.+)@", re.IGNORECASE)
_ADDRESS_PIECES = st.sampled_from(["=", "@", "\n", "a", "-", ".", "x", "bounce-", "info", "noreply",
                                   "-request", "sentto-", "0123abcd", "undisclosed", "Q"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_ADDRESS_PIECES, max_size=14).map("".join))
def test_role_and_bulk_addresses_are_the_plugins(address: str) -> None:
    """The plugin's ".+=.+" branches are found without a regex (they backtracked: a 6 kB
    Return-Path of "=" took a second each time FREEMAIL_REPLYTO looked): the same answers
    as its whole patterns."""
    assert role_address(address) == bool(_PLUGIN_ROLE.search(address))
    assert bulk_envelope(address) == bool(_PLUGIN_BULK.search(address))


def test_a_long_return_path_of_redirects_is_not_bulk(tmp_path: Path) -> None:
    """The message the Debian-rules fuzzing found, in its shape: a Return-Path of a
    redirector link repeated, "=" after "=" and no "@" after them. It is no bulk sender,
    so From and Reply-To are compared as for any message."""
    path = "<rss@spam" + "http://www.google.com/url?q=" * 200 + ">"
    assert not bulk_envelope(path) and not _PLUGIN_BULK.search(path[:300])
    both = (b"Return-Path: " + path.encode() + b"\n" + OUTSIDE +
            b"From: ann@freemail.example\nReply-To: dan@hotmail.co.uk\n\nx\n")
    assert "FM_REPLYTO" in _freemail_hits(tmp_path, both)


_NAME_BEFORE_ADDRESS = re.compile(r"^\s*\"?([^\"<]*?)\"?\s*<")  # what `:name` took, as a regex


@settings(max_examples=5000, deadline=None)
@given(st.text(alphabet=' \t"<>ab\n\x1c\u00a0', max_size=16))
def test_display_name_is_what_the_regex_took(value: str) -> None:
    """`:name` is found without the regex, whose white-space runs around a lazy group
    backtracked (a From of 20,000 spaces and a letter took 0.9 s): the same name."""
    match = _NAME_BEFORE_ADDRESS.match(value)
    assert display_name(value) == (match.group(1).strip() if match else "")


_MAILTO_LINK = re.compile(r"""<a\s[^>]*?\bhref\s*=\s*["']?\s*mailto:([^"'>\s?]+)""", re.IGNORECASE)
_HTML_PIECES = st.sampled_from(["<a ", "<A\t", "<a", ">", "href", "HREF", "=", "'", '"', " ", "mailto:", "x",
                                "@", "-", "?", "<", "a"])


@settings(max_examples=5000, deadline=None)
@given(st.lists(_HTML_PIECES, max_size=18).map("".join))
def test_mailto_links_are_what_the_regex_found(html: str) -> None:
    """FREEMAIL_REPLY's mailto: links are found in linear time (as one regex, 60 kB of
    "<a " with no ">" took 19 s): the same addresses, in the same order."""
    assert [m.group(1) for m in mailto_links(html)] == [m.group(1) for m in _MAILTO_LINK.finditer(html)]
