"""The SpamAssassin evals spamkit implements, each on a message made to hit and one made
to miss, and the load-time refusal of arguments it cannot answer."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules

BASE = (b"Received: from mx.example.net (mx.example.net [192.0.2.1]) by mail.example.org;"
        b" Tue, 25 Nov 2026 10:00:00 +0000\n"
        b"Received: from client (unknown [198.51.100.7]) by mx.example.net;"
        b" Tue, 25 Nov 2026 09:59:00 +0000\n"
        b"Return-Path: <bounce@lists.example.net>\n")

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
    path.write_text("body A eval:html_test('font_low_contrast')\n"
                    "rawbody B eval:check_for_mime('mime_faraway_charset')\n"
                    "body C eval:html_test('html')\n")
    ruleset = load_rules([path], builtin=False)
    assert set(ruleset.rules) == {"C"}
    assert ruleset.report.skipped == {"eval not implemented": 2}


def test_pseudo_headers_need_spamassassin_spelling(tmp_path: Path) -> None:
    path = tmp_path / "pseudo.cf"
    path.write_text("header REAL_MESSAGEID exists:MessageID\nheader PSEUDO MESSAGEID =~ /\\@/\n")
    ruleset = load_rules([path], builtin=False)
    raw = BASE + b"Message-ID: <1@example.org>\n\nx\n"
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)))
    assert "PSEUDO" in counts and "REAL_MESSAGEID" not in counts
