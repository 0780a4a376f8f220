"""The SpamAssassin evals spamkit implements, each on a message made to hit and one made
to miss, and the load-time refusal of arguments it cannot answer."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules

# (Return-Path on top, where the delivering MTA writes it: below a Received line it
# may be a list's new sender, and the envelope is not guessed from it)
BASE = (b"Return-Path: <bounce@lists.example.net>\n"
        b"Received: from mx.example.net (mx.example.net [192.0.2.1]) by mail.example.org;"
        b" Tue, 25 Nov 2026 10:00:00 +0000\n"
        b"Received: from client (unknown [198.51.100.7]) by mx.example.net;"
        b" Tue, 25 Nov 2026 09:59:00 +0000\n")

RULES = r"""
freemail_domains freemail.example mail.*  *.webmail.example
freemail_welcomelist friend@freemail.example
header PAST_06_12   eval:check_for_shifted_date('-12', '-6')
header FUTURE_96_XX eval:check_for_shifted_date('96', 'undef')
header CAPS         eval:subject_is_all_caps()
header TWO_SUBJ     eval:check_header_count_range('Subject', '2', '999')
header DIFF_DOMAINS eval:check_equal_from_domains()
header ILLEGAL      eval:check_illegal_chars('Subject', '0.10', '2')
header FM_FROM      eval:check_freemail_from()
header FM_DIGIT     eval:check_freemail_header('Reply-To', '\d@')
header FM_REPLYTO   eval:check_freemail_replyto('replyto')
body   HTML_ONLY    eval:check_for_mime_html_only()
body   HTML_MSG     eval:html_test('html')
body   TAG_CENTER   eval:html_tag_exists('center')
rawbody B64_TEXT    eval:check_for_mime('mime_base64_encoded_text')
rawbody QP_LONG     eval:check_for_mime('mime_qp_long_line')
body   ONE_GIF      eval:image_count('gif', '1', '1')
body   SHORT_BODY   eval:check_body_length('64')
body   UPPER_75     eval:check_for_uppercase('75', '100')
header OUTLOOK_ID   eval:check_outlook_message_id()
header SORTED       eval:sorted_recipients()
header SIMILAR      eval:similar_recipients('0.65', 'undef')
header YAHOO_FORGED eval:check_for_forged_yahoo_received_headers()
header HOTMAIL_HELO eval:check_for_forged_hotmail_received_headers()
header NO_HOTMAIL   eval:check_for_no_hotmail_received_headers()
header DOTCOM_HELO  eval:check_for_no_rdns_dotcom_helo()
header HELO_IP      eval:helo_ip_mismatch()
body   FAKE_ASCII   eval:check_for_ascii_text_illegal()
body   ALT_DIFF     eval:multipart_alternative_difference('99', '100')
body   NONEMPTY     /\S/
tflags NONEMPTY     nosubject
body   IN_SUBJECT   /hello/
uri    UNSUB_LINK   /\bunsubscribe\b/i
util_rb_tld com org net
"""


def hits(tmp_path: Path, message: bytes) -> set[str]:
    path = tmp_path / "evals.cf"
    path.write_text(RULES)
    ruleset = load_rules([path], builtin=False)
    assert not ruleset.report.errors and not ruleset.report.skipped, ruleset.report.as_json()
    raw = BASE + message
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)))
    return set(counts)


def test_dates_subject_and_headers(tmp_path: Path) -> None:
    shifted = hits(tmp_path, b"Date: Mon, 24 Nov 2026 23:00:00 +0000\nFrom: a@shop.example\n"
                             b"Subject: BUY NOW AND SAVE\nSubject: again\n\nhi\n")
    assert {"PAST_06_12", "CAPS", "TWO_SUBJ", "DIFF_DOMAINS", "SHORT_BODY"} <= shifted
    assert "FUTURE_96_XX" not in shifted
    plain = hits(tmp_path, b"Date: Tue, 25 Nov 2026 09:58:00 +0000\nFrom: a@lists.example.net\n"
                           b"Subject: Buy now and save\n\n" + b"A long enough body. " * 10 + b"\n")
    assert not plain & {"PAST_06_12", "CAPS", "TWO_SUBJ", "DIFF_DOMAINS", "SHORT_BODY"}
    assert "FUTURE_96_XX" in hits(tmp_path, b"Date: Tue, 09 Dec 2026 10:00:00 +0000\n\nx\n")
    # the Received date closest to Date counts: the first hop's own clock error does not
    assert "PAST_06_12" not in hits(tmp_path, b"Date: Tue, 25 Nov 2026 09:59:30 +0000\n\nx\n")
    assert "ILLEGAL" in hits(tmp_path, "Subject: Prix réduit àç\n\nx\n".encode("latin-1"))


def _outlook_id(unix_time: float) -> bytes:
    """A Message-ID as Outlook Express wrote it: the high 32 bits of the FILETIME."""
    units = int((unix_time + 11_644_473_600) * 10**7) >> 32
    return f"Message-ID: <0000{units:08x}$0a1b2c3d$4e5f6a7b@pc>\n".encode()


def test_outlook_message_id_time(tmp_path: Path) -> None:
    sent = datetime(2026, 11, 25, 9, 58, tzinfo=timezone.utc).timestamp()
    date = b"Date: Tue, 25 Nov 2026 09:58:00 +0000\n"
    assert "OUTLOOK_ID" not in hits(tmp_path, date + _outlook_id(sent) + b"\nx\n")
    # made up: 3 days off the Date and the first relay's Received time
    assert "OUTLOOK_ID" in hits(tmp_path, date + _outlook_id(sent - 3 * 86400) + b"\nx\n")
    # a wrong Date alone is not enough while the Received time agrees
    assert "OUTLOOK_ID" not in hits(tmp_path, b"Date: Mon, 01 Jan 2001 00:00:00 +0000\n"
                                    + _outlook_id(sent) + b"\nx\n")
    assert "OUTLOOK_ID" not in hits(tmp_path, date + b"Message-ID: <abc@pc>\n\nx\n")


def test_freemail(tmp_path: Path) -> None:
    got = hits(tmp_path, b"From: Ann <ann@freemail.example>\nReply-To: bob77@mail.co\n\n"
                         b"write to carol@x.webmail.example\n")
    assert {"FM_FROM", "FM_DIGIT", "FM_REPLYTO"} <= got
    assert not hits(tmp_path, b"From: friend@freemail.example\nReply-To: friend@freemail.example\n\nx\n") \
        & {"FM_FROM", "FM_DIGIT", "FM_REPLYTO"}
    assert "FM_FROM" not in hits(tmp_path, b"From: ann@mail.example.org\n\nx\n")  # mail.* is one label


def test_mime_and_html(tmp_path: Path) -> None:
    html = hits(tmp_path, b"Content-Type: text/html\n\n<html><center>HELLO THERE FRIEND</center></html>\n")
    assert {"HTML_ONLY", "HTML_MSG", "TAG_CENTER"} <= html
    mixed = (b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n"
             b"Content-Transfer-Encoding: base64\n\nSGVsbG8gdGhlcmU=\n--b\n"
             b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
             + b"x" * 90 + b"\n--b\nContent-Type: image/gif; name=a.gif\n"
             b"Content-Transfer-Encoding: base64\n\nR0lGODlh\n--b--\n")
    got = hits(tmp_path, mixed)
    assert {"B64_TEXT", "QP_LONG", "ONE_GIF"} <= got and not got & {"HTML_ONLY", "HTML_MSG"}
    assert "UPPER_75" in hits(tmp_path, b"\n" + b"FREE MONEY FOR YOU NOW " * 20 + b"\n")
    assert "UPPER_75" not in hits(tmp_path, b"\nFREE MONEY\n")  # too short to judge


def test_unsupported_eval_arguments_are_skipped_at_load(tmp_path: Path) -> None:
    path = tmp_path / "odd.cf"
    path.write_text("body A eval:html_test('no_such_fact')\n"
                    "rawbody B eval:check_for_mime('mime_no_such_test')\n"
                    "header D eval:similar_recipients('x', 'undef')\n"
                    "header E eval:check_for_shifted_date('-12')\n"
                    "body C eval:html_test('html')\n")
    ruleset = load_rules([path], builtin=False)
    assert set(ruleset.rules) == {"C"}
    assert ruleset.report.skipped == {"eval not implemented": 4}


def test_pseudo_headers_need_spamassassin_spelling(tmp_path: Path) -> None:
    path = tmp_path / "pseudo.cf"
    path.write_text("header REAL_MESSAGEID exists:MessageID\nheader PSEUDO MESSAGEID =~ /\\@/\n")
    ruleset = load_rules([path], builtin=False)
    raw = BASE + b"Message-ID: <1@example.org>\n\nx\n"
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)))
    assert "PSEUDO" in counts and "REAL_MESSAGEID" not in counts


def _path_hits(tmp_path: Path, headers: bytes) -> set[str]:
    """Hits of a message whose whole header block is given (BASE's path left out)."""
    path = tmp_path / "evals.cf"
    path.write_text(RULES)
    ruleset = load_rules([path], builtin=False)
    raw = headers + b"\nx\n"
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)))
    return set(counts)


HOP = b"Received: from mx.example.net (mx.example.net [192.0.2.1]) by mail.example.org; Tue, 25 Nov 2026 10:00:00 +0000\n"


def test_envelope_sender_is_guessed_as_spamassassin_guesses_it(tmp_path: Path) -> None:
    """HEADER_FROM_DIFFERENT_DOMAINS compares From with the envelope sender; without
    the MTA's word for it, the envelope is the last untrusted relay's envelope-from,
    else a Return-Path (or X-Envelope-From, Envelope-Sender) above every Received line."""
    from_shop = b"From: Shop <news@shop.example>\n"
    on_top = b"Return-Path: <bounce@lists.example.net>\n" + HOP + from_shop
    assert "DIFF_DOMAINS" in _path_hits(tmp_path, on_top)
    # below a hop, it may be a list's new sender: no envelope, no opinion
    below = HOP + b"Return-Path: <bounce@lists.example.net>\n" + from_shop
    assert "DIFF_DOMAINS" not in _path_hits(tmp_path, below)
    # the relay's own record of the envelope wins over Return-Path
    with_envelope = (b"Return-Path: <bounce@lists.example.net>\n"
                     b"Received: from mx.shop.example (mx.shop.example [192.0.2.9]) by mail.example.org"
                     b" (envelope-from <news@shop.example>); Tue, 25 Nov 2026 10:00:00 +0000\n" + from_shop)
    assert "DIFF_DOMAINS" not in _path_hits(tmp_path, with_envelope)
    # a fetcher may have taken X-Sender for the envelope: nothing is trusted then
    fetched = (b"Return-Path: <bounce@lists.example.net>\n" + HOP
               + b"Received: from pop.example.net [192.0.2.5] by localhost with POP3 (fetchmail-6.4.37)\n"
               + b"X-Sender: someone@lists.example.net\n" + from_shop)
    assert "DIFF_DOMAINS" not in _path_hits(tmp_path, fetched)
    # the last two labels are compared, as SpamAssassin does: both of these are "co.uk"
    same_two = b"Return-Path: <a@lists.other.co.uk>\n" + HOP + b"From: b@mail.example.co.uk\n"
    assert "DIFF_DOMAINS" not in _path_hits(tmp_path, same_two)


def test_recipient_lists_from_a_harvest(tmp_path: Path) -> None:
    sorted_to = b"To: " + b", ".join(f"{u}@example.org".encode() for u in "abcdefg") + b"\n"
    got = _path_hits(tmp_path, HOP + sorted_to)
    assert "SORTED" in got and "SIMILAR" not in got
    assert "SORTED" not in _path_hits(tmp_path, HOP + b"To: g@example.org, a@example.org, b@example.org, "
                                      b"c@example.org, d@example.org, e@example.org, f@example.org\n")
    # a dictionary run: users starting alike at hosts starting alike
    harvest = b"To: ann@mail1.example, anna@mail2.example\nCc: andy@mail3.example, anne@mail4.example,"
    harvest += b" anton@mail5.example\n"
    assert "SIMILAR" in _path_hits(tmp_path, HOP + harvest)
    # four are too few to judge; a repeat right after itself counts once
    assert "SIMILAR" not in _path_hits(tmp_path, HOP + b"To: ann@mail1.example, ANN@mail1.example, "
                                       b"anna@mail2.example, andy@mail3.example, anne@mail4.example\n")


def test_freemail_from_a_path_that_is_not_the_providers(tmp_path: Path) -> None:
    outside = (b"Received: from smtp.example.net (smtp.example.net [198.51.100.7]) by mx.example.org"
               b" (Postfix) with ESMTP id A1; Tue, 25 Nov 2026 10:00:00 +0000\n")
    assert "YAHOO_FORGED" in _path_hits(tmp_path, outside + b"From: Ann <ann@yahoo.com>\n")
    webmail = (outside + b"Received: from [198.51.100.20] by web1.mail.yahoo.com via HTTP;"
               b" Tue, 25 Nov 2026 09:59:00 +0000\n")
    assert "YAHOO_FORGED" not in _path_hits(tmp_path, webmail + b"From: Ann <ann@yahoo.com>\n")
    # the address in a display name is not the sender's
    assert "YAHOO_FORGED" not in _path_hits(tmp_path, outside + b'From: "ann@yahoo.com" <x@example.net>\n')
    hotmail_from = b"From: bob@hotmail.com\n"
    assert "NO_HOTMAIL" in _path_hits(tmp_path, outside + hotmail_from)
    real = (b"Received: from hotmail.com (f135.law8.hotmail.com [216.33.241.135]) by mx.example.org (Postfix)"
            b" with ESMTP id A2; Tue, 25 Nov 2026 10:00:00 +0000\nX-Originating-IP: [198.51.100.30]\n")
    assert not _path_hits(tmp_path, real + hotmail_from) & {"NO_HOTMAIL", "HOTMAIL_HELO"}
    borrowed_helo = (b"Received: from mx06.hotmail.com (dsl.example.net [198.51.100.44]) by mx.example.org"
                     b" (Postfix) with ESMTP id A3; Tue, 25 Nov 2026 10:00:00 +0000\n")
    got = _path_hits(tmp_path, borrowed_helo + hotmail_from)
    assert "HOTMAIL_HELO" in got and "NO_HOTMAIL" not in got
    # no Received line at all: nothing to judge by
    assert not _path_hits(tmp_path, hotmail_from + b"From: ann@yahoo.com\n") & {"NO_HOTMAIL", "YAHOO_FORGED"}


def test_helo_lies_of_the_last_untrusted_relays(tmp_path: Path) -> None:
    def hop(text: bytes) -> bytes:
        return b"Received: from " + text + b"; Tue, 25 Nov 2026 10:00:00 +0000\n"

    no_rdns = hop(b"mx06.hotmail.com (unknown [198.51.100.44]) by mx.example.org (Postfix) with ESMTP id A4")
    assert "DOTCOM_HELO" in _path_hits(tmp_path, no_rdns)
    named = hop(b"mx06.hotmail.com (dsl.example.net [198.51.100.44]) by mx.example.org (Postfix) with ESMTP id A5")
    assert "DOTCOM_HELO" not in _path_hits(tmp_path, named)
    # Exchange's SMTP service never looks the address up: its empty name says nothing
    exchange = hop(b"mx06.hotmail.com ([198.51.100.44]) by mail.example.org with Microsoft SMTPSVC(5.0.2195.4905)")
    assert "DOTCOM_HELO" not in _path_hits(tmp_path, exchange)
    far = hop(b"203.0.113.5 (dsl.example.net [198.51.100.44]) by mx.example.org (Postfix) with ESMTP id A6")
    assert "HELO_IP" in _path_hits(tmp_path, far)
    near = hop(b"198.51.100.45 (dsl.example.net [198.51.100.44]) by mx.example.org (Postfix) with ESMTP id A7")
    assert "HELO_IP" not in _path_hits(tmp_path, near)
    private = hop(b"192.168.1.5 (dsl.example.net [198.51.100.44]) by mx.example.org (Postfix) with ESMTP id A8")
    assert "HELO_IP" not in _path_hits(tmp_path, private)


def test_mime_facts_as_spamassassin_counts_them(tmp_path: Path) -> None:
    # text/plain says US-ASCII (or nothing) and carries 8-bit bytes as sent
    assert "FAKE_ASCII" in hits(tmp_path, "Content-Type: text/plain; charset=us-ascii\n\nprix réduit\n"
                                .encode("latin-1"))
    assert "FAKE_ASCII" in hits(tmp_path, "\nprix réduit\n".encode("latin-1"))
    assert "FAKE_ASCII" not in hits(tmp_path, "Content-Type: text/plain; charset=iso-8859-1\n\nprix réduit\n"
                                    .encode("latin-1"))
    assert "FAKE_ASCII" not in hits(tmp_path, b"Content-Type: text/plain; charset=us-ascii\n"
                                    b"Content-Transfer-Encoding: quoted-printable\n\nprix r=E9duit\n")
    # base64 for text declared US-ASCII; a declared Latin-1 text may need it
    b64 = b"Content-Type: text/plain; charset=%s\nContent-Transfer-Encoding: base64\n\nSGVsbG8gdGhlcmU=\n"
    assert "B64_TEXT" in hits(tmp_path, b64 % b"us-ascii")
    assert "B64_TEXT" not in hits(tmp_path, b64 % b"iso-8859-1")
    # a quoted-printable line over RFC 5322's 78 characters, not RFC 2045's 76
    qp = b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n%s\n"
    assert "QP_LONG" not in hits(tmp_path, qp % (b"x" * 78))
    assert "QP_LONG" in hits(tmp_path, qp % (b"x" * 79))


def _alternative(plain: bytes, html: bytes) -> bytes:
    return (b"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n" + plain
            + b"\n--b\nContent-Type: text/html\n\n" + html + b"\n--b--\n")


def test_the_versions_of_an_alternative_should_say_the_same(tmp_path: Path) -> None:
    same = _alternative(b"Meeting at noon, room 4.", b"<html><body><p>Meeting at noon, room 4.</p></body></html>")
    assert "ALT_DIFF" not in hits(tmp_path, same)
    other = _alternative(b"Please enable HTML to read this message.",
                         b"<html><body><b>Cheap pills</b> shipped overnight</body></html>")
    assert "ALT_DIFF" in hits(tmp_path, other)
    # an HTML version of nothing but an image differs wholly from any text
    assert "ALT_DIFF" in hits(tmp_path, _alternative(b"Hello there", b'<html><img src="cid:a"></html>'))
    # outside an alternative the two parts are not versions of one text
    mixed = other.replace(b"multipart/alternative", b"multipart/mixed")
    assert "ALT_DIFF" not in hits(tmp_path, mixed)


def test_body_rules_and_the_subject(tmp_path: Path) -> None:
    """The Subject is the body's first paragraph, as in SpamAssassin, except for rules
    flagged `nosubject` (__NONEMPTY_BODY: an empty message is empty whatever its Subject)."""
    got = hits(tmp_path, b"Subject: hello\n\n \n")
    assert "IN_SUBJECT" in got and "NONEMPTY" not in got
    assert "NONEMPTY" in hits(tmp_path, b"Subject: hello\n\nbody text\n")


def test_addresses_in_text_are_links_to_uri_rules(tmp_path: Path) -> None:
    """A mail reader makes an address in the text a link: "write to
    list-unsubscribe@example.com" is an unsubscribe link (SpamAssassin's __UNSUB_LINK).
    As in SpamAssassin, a link found in text counts only with a host under a top-level
    domain the rule files list (util_rb_tld, which its own files always have)."""
    assert "UNSUB_LINK" in hits(tmp_path, b"\nTo leave, write to list-unsubscribe@example.com.\n")
    assert "UNSUB_LINK" not in hits(tmp_path, b"\nTo leave, write to list-unsubscribe@example\n")
    path = tmp_path / "evals.cf"
    path.write_text(RULES)
    ruleset = load_rules([path], builtin=False)
    raw = BASE + b"\nmail bob@example.org, email:ann@example.net or see http://u:p@h.example.com/ x@10.0.0.1\n"
    context = MessageContext(raw, parse_message(raw))
    context.registry = ruleset.registry
    assert context.written_links == ["mailto:bob@example.org", "mailto:ann@example.net", "http://u:p@h.example.com/"]
    assert {"http://u:p@h.example.com/", "mailto:bob@example.org", "mailto:ann@example.net"} <= set(context.uris)
    assert parse_message(raw).urls == ["http://u:p@h.example.com/"]  # Bayes' links are the parser's
    # without the list, no host is known: SpamAssassin warns and finds no link in text
    context = MessageContext(raw, parse_message(raw))
    assert context.written_links == []


def test_the_built_in_uri_rules_see_the_links_they_were_fitted_on() -> None:
    """URI_REMOVE_ME (a link to a removal page) was fitted on links alone; an address in
    a list's footer text is not a removal page to it (decision 0038)."""
    ruleset = load_rules(builtin=True, probe=False, cache=False)
    footer = BASE + b"\nTo leave the list, write to list-remove@lists.example.net\n"
    counts, _ = ruleset.match_counts(MessageContext(footer, parse_message(footer)))
    assert "URI_REMOVE_ME" not in counts
    link = BASE + b"\nTo leave: http://lists.example.net/remove\n"
    counts, _ = ruleset.match_counts(MessageContext(link, parse_message(link)))
    assert "URI_REMOVE_ME" in counts


def test_capabilities_the_rule_files_ask_about(tmp_path: Path) -> None:
    """`if can(...)` blocks around evals spamkit implements load; others stay out."""
    path = tmp_path / "can.cf"
    path.write_text("if can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)\n"
                    "body SHORT eval:check_body_length('64')\nendif\n"
                    "if can(Mail::SpamAssassin::Plugin::MIMEEval::has_check_for_ascii_text_illegal)\n"
                    "body FAKE eval:check_for_ascii_text_illegal()\nendif\n"
                    "if can(Mail::SpamAssassin::Plugin::ASN::has_check_asn)\nbody ASN /x/\nendif\n")
    assert set(load_rules([path], builtin=False).rules) == {"SHORT", "FAKE"}
