"""`ok_locales` and the four "faraway charset" evals, held against Debian's
Mail::SpamAssassin on the same rules and messages (decision 0054)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.locales import charset_is_ok
from tests.scoring.test_sa_evals import _hits_agree, _message
from tests.scoring.test_spamassassin_rules import require_debian_rules

EVALS = r"""
body    CS_BODY    eval:check_for_faraway_charset()
header  CS_HEADER  eval:check_for_faraway_charset_in_headers()
rawbody CS_MIME    eval:check_for_mime('mime_faraway_charset')
body    CS_HTML    eval:html_charset_faraway()
"""

_RUSSIAN = "Привет! Это письмо написано по-русски, и в нём много букв.\n"
_JAPANESE = "これは日本語で書かれたメールです。よろしくお願いします。\n"
_FROM = b"From: a@x.example\nTo: b@ok.example\n"


def _text(charset: bytes, body: bytes, quoted: bool = False) -> bytes:
    written = b'"' + charset + b'"' if quoted else charset
    return _message(_FROM + b"MIME-Version: 1.0\nContent-Type: text/plain; charset=" + written + b"\n", body)


def _encoded_subject(charset: str, text: str) -> bytes:
    word = base64.b64encode(text.encode(charset))
    return _message(_FROM + b"Subject: =?" + charset.encode() + b"?B?" + word + b"?=\n")


def _html(declared: bytes, meta: bytes) -> bytes:
    return _message(_FROM + b"MIME-Version: 1.0\nContent-Type: text/html; charset=" + declared + b"\n",
                    b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=' + meta
                    + b'"></head><body><p>hello there, plain words</p></body></html>\n')


MESSAGES = {
    "koi8-r text": _text(b"koi8-r", _RUSSIAN.encode("koi8_r")),
    "koi8-r, ascii only": _text(b"koi8-r", b"nothing but ascii in this one\n"),
    "shift_jis, quoted": _text(b"Shift_JIS", _JAPANESE.encode("shift_jis"), quoted=True),
    "x-mac-roman": _text(b"x-mac-roman", b"plain words\n"),
    "windows-1251": _text(b"windows-1251", _RUSSIAN.encode("cp1251")),
    "utf-8": _text(b"utf-8", _RUSSIAN.encode()),
    "big5 subject": _encoded_subject("big5", "測試郵件"),
    "utf-8 subject": _encoded_subject("utf-8", "測試郵件"),
    "gb2312 part": _message(_FROM + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n",
                            b"--B\nContent-Type: text/plain; charset=us-ascii\n\nhello\n--B\n"
                            b"Content-Type: text/plain; charset=gb2312\n\nhello again\n--B--\n"),
    "euc-kr meta": _html(b"iso-8859-1", b"euc-kr"),
    "latin meta": _html(b"iso-8859-1", b"iso-8859-1"),
}


def test_faraway_charsets_hit_as_in_spamassassin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_debian_rules()
    # SpamAssassin adds the process's own locale to ok_locales (LC_ALL first); spamkit
    # does not (decision 0054). "C" is English to it, which adds no charset.
    monkeypatch.setenv("LC_ALL", "C")
    for locales in ("en", "ru", "all"):
        (tmp_path / locales).mkdir()
    theirs = _hits_agree(tmp_path / "en", "ok_locales en\n" + EVALS, MESSAGES)
    assert theirs["koi8-r text"] == {"CS_BODY", "CS_MIME"} == theirs["shift_jis, quoted"]
    assert theirs["koi8-r, ascii only"] == {"CS_MIME"} == theirs["x-mac-roman"] == theirs["gb2312 part"]
    assert theirs["windows-1251"] == set() == theirs["utf-8"] == theirs["utf-8 subject"] == theirs["latin meta"]
    assert theirs["big5 subject"] == {"CS_HEADER"}
    # SpamAssassin 4.0's HTML reader keeps a <meta> tag's charset where its eval never
    # looks: HTML_CHARSET_FARAWAY cannot hit there, and does not here
    assert theirs["euc-kr meta"] == set()
    # a site that reads Russian and Japanese: their charsets are at home
    theirs = _hits_agree(tmp_path / "ru", "ok_locales en ru_RU ja\n" + EVALS, MESSAGES)
    assert theirs["koi8-r text"] == set() == theirs["shift_jis, quoted"]
    assert theirs["big5 subject"] == {"CS_HEADER"}
    # the default, all: nothing is far away
    theirs = _hits_agree(tmp_path / "all", EVALS, MESSAGES)
    assert not any(theirs.values())


def test_charset_names_are_read_loosely() -> None:
    assert charset_is_ok("ISO-8859-5", ("en",)) and charset_is_ok("utf8", ("en",))
    assert not charset_is_ok("KOI8-R", ("en",)) and charset_is_ok("koi8_r", ("ru_RU.UTF-8",))
    assert charset_is_ok("=3Dbig5", ("zh",)) and not charset_is_ok("big5", ("C",))
    assert not charset_is_ok("x-unknown-thing", ("en", "ru"))


def test_ok_locales_needs_a_value(tmp_path: Path) -> None:
    (tmp_path / "local.cf").write_text("ok_locales\n", encoding="utf-8")
    report = load_rules([tmp_path / "local.cf"], builtin=False).report
    assert len(report.errors) == 1 and "local.cf:1" in report.errors[0] and "ok_locales" in report.errors[0]


@pytest.mark.parametrize("locales, hit", [("all", False), ("en", True), ("en ru", False)])
def test_the_last_ok_locales_line_decides(tmp_path: Path, locales: str, hit: bool) -> None:
    (tmp_path / "local.cf").write_text(f"ok_locales ja\nok_locales {locales}\n{EVALS}", encoding="utf-8")
    ruleset = load_rules([tmp_path / "local.cf"], builtin=False)
    raw = MESSAGES["koi8-r text"]
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
    assert ("CS_BODY" in counts) is hit


ISO_RULES = r"""
rawbody BAD_ISO     eval:check_for_mime('mime_bad_iso_charset')
body    PART_LIMIT  eval:check_for_mime('mimepart_limit_exceeded')
"""

_MANY_PARTS = _message(_FROM + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=M\n",
                       b"".join(b"--M\nContent-Type: text/plain\n\npart %d\n" % n for n in range(1002)) + b"--M--\n")

ISO_MESSAGES = {
    **{f"charset {name}": _text(name.encode(), b"plain words\n") for name in (
        "iso-8859-1", "ISO-8859-15", "iso-2022-jp", "iso-2022-kr", "iso-2022-cn", "iso-10646-ucs-2", "iso-ir-111",
        "us-ascii")},
    "a part in iso-2022-cn": _message(_FROM + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n",
                                      b"--B\nContent-Type: text/plain; charset=iso-2022-cn\n\nhello\n--B--\n"),
    "1,002 parts": _MANY_PARTS,
}


def test_bad_iso_charsets_and_the_parts_limit_as_in_spamassassin(tmp_path: Path) -> None:
    """MIME_BAD_ISO_CHARSET: an ISO charset other than ISO 8859 and ISO-2022-JP/KR.
    MIMEPART_LIMIT_EXCEEDED never hits in SpamAssassin 4.0 (its parser marks the message,
    where check_for_mime does not look), and not here either."""
    require_debian_rules()
    theirs = _hits_agree(tmp_path, ISO_RULES, ISO_MESSAGES)
    hit = {name for name, names in theirs.items() if "BAD_ISO" in names}
    assert hit == {"charset iso-2022-cn", "charset iso-10646-ucs-2", "charset iso-ir-111", "a part in iso-2022-cn"}
    assert not any("PART_LIMIT" in names for names in theirs.values())
