"""Pumped inputs: one adversarial unit repeated to the scan cap, timed through the whole scan.

`python3 -m tests.fuzz.pumped --workdir DIR [--bytes N] [--rules PATH]`

Coverage-guided fuzzing (tests.fuzz.scan) grows its inputs slowly and rarely reaches the
sizes where a quadratic loop shows. These inputs go straight there: each is a few headers
and then one unit ("<", "=?utf-8?B?", "--boundary\\n", ...) repeated up to `--bytes`
(default 500,000, MaxMessageSize: what a scan reads of any message). It prints the CPU
time of each, slowest first, and exits 1 if any took more than `--slow` seconds
(checklist item 16 asks for under 1 s). Not a test: tests never assert timings.

With `--rules /usr/share/spamassassin` the scan runs Debian's rules too, and so the
code only they reach: SpamAssassin's evals, its named lists, Received parser, link
canonicaliser and body renderer. The units after "(rules)" below came from that path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.fuzz.engine import trained_scanner

_PLAIN = b"From: a@example.com\nTo: b@example.org\nSubject: x\n\n"
_HTML = b"From: a@example.com\nContent-Type: text/html\n\n"
_QP = b"From: a@example.com\nContent-Transfer-Encoding: quoted-printable\n\n"
_B64 = b"From: a@example.com\nContent-Transfer-Encoding: base64\n\n"
_MULTIPART = b"Content-Type: multipart/mixed; boundary=X\n\n"

# (name, what comes first, the unit repeated)
UNITS: tuple[tuple[str, bytes, bytes], ...] = (
    ("text: <", _PLAIN, b"<"),
    ("text: <a href=\"", _PLAIN, b"<a href=\""),
    ("text: http://", _PLAIN, b"http://"),
    ("text: http://a.", _PLAIN, b"http://a."),
    ("text: www.", _PLAIN, b"www."),
    ("text: @", _PLAIN, b"@"),
    ("text: a@b.", _PLAIN, b"a@b."),
    # SpamAssassin's text link finder (decision 0042): its address branch backtracks
    # 251 characters at each "@" here, its bare-host branch at each "(" before a domain
    ("text: a@ (link finder)", _PLAIN, b"a@"),
    ("text: (a.com (link finder)", _PLAIN, b"(a.com"),
    ("text: one long word", _PLAIN, b"abcdefghij"),
    ("text: NUL", _PLAIN, b"\x00"),
    ("text: CR", _PLAIN, b"\r"),
    ("text: spaces", _PLAIN, b" "),
    ("text: $1", _PLAIN, b"$1"),
    ("text: 1.", _PLAIN, b"1."),
    ("text: IP addresses", _PLAIN, b"1.2.3.4 "),
    ("text: CJK", _PLAIN, "日本".encode()),
    ("text: begin 644 (uuencode)", _PLAIN, b"begin 644 a\n"),
    ("html: <", _HTML, b"<"),
    ("html: unclosed quoted attribute", _HTML, b"<a href='x"),
    ("html: unclosed comment", _HTML, b"<!--"),
    ("html: unclosed script", _HTML, b"<script>"),
    ("html: hidden paragraphs", _HTML, b"<p style='display:none'>"),
    ("html: nested hidden divs", _HTML, b"<div style=display:none><b>x"),
    ("html: font size=0, unclosed", _HTML, b"<font size=0 "),
    ("html: &#", _HTML, b"&#"),
    ("html: &amp", _HTML, b"&amp"),
    ("html: href= with no tag", _HTML, b" href= "),
    ("html: unclosed alt", _HTML, b"<img alt='"),
    ("header: encoded words", b"Subject: ", b"=?utf-8?B?"),
    ("header: bad Q encoded words", b"Subject: ", b"=?x?q?=="),
    ("header: ;;;", b"Content-Type: text/plain;", b";"),
    ("header: 100,000-address To", b"To: ", b"a@b.c, "),
    ("header: folds", b"Subject: x", b"\n "),
    ("headers: many", b"", b"X-A: b\n"),
    ("headers: Received", b"", b"Received: from a.b ([1.2.3.4]) by c.d\n"),
    ("mime: boundaries", _MULTIPART, b"--X\n"),
    ("mime: nested multiparts", _MULTIPART, b"--X\nContent-Type: multipart/mixed; boundary=X\n\n"),
    ("mime: nested message/rfc822", b"Content-Type: message/rfc822\n\n", b"Content-Type: message/rfc822\n\n"),
    ("quoted-printable: =", _QP, b"="),
    ("quoted-printable: soft breaks", _QP, b"=\n"),
    ("base64: garbage", _B64, b"!"),
    # (rules) each reaches a pattern of spamkit's own that backtracked for seconds or more
    # before it was made linear, with the built-in rules (From) or Debian's (the rest);
    # decision 0045 and the fuzz README have the times. The two tag units drive the body
    # renderer's step-by-step walk, which took over from one of them.
    ("header: From of letters", b"From: ", b"a"),
    ("header: From of spaces", b"From: a", b" "),
    ("header: From of a@", b"From: x", b"a@"),
    ("header: To of <", b"To: x", b"<"),
    ("header: Return-Path of redirects", b"Return-Path: <rss@spam", b"http://www.google.com/url?q="),
    ("header: Received of ;", b"Received: from a (b [1.2.3.4]) by c.d", b";"),
    ("header: Received by 1.1.1.", b"Received: from a.b (c.d [1.2.3.4]) by ", b"1."),
    ("header: Authentication-Results of a.", b"Authentication-Results: x; dkim=pass ", b"a."),
    ("html: a<", _HTML, b"a<"),
    ("html: a tag name of a=", _HTML + b"<a", b"a="),
    ("html: tags that end only with a shorter name", _HTML, b'<x="y z="w>'),
    ("html: <a with no >, from freemail", b"From: a@hotmail.com\nReply-To: b@gmail.com\nContent-Type: text/html\n\n",
     b"<a "),
    ("html: mailto: of %20", _HTML + b"<a href=mailto:", b"%20"),
    # a built-in rule's pattern (TO_NO_BRACKETS_MANY) retried every position to the end
    # of the To lines: 0.26 s at the header cap, linear since
    ("headers: To lines without a comma", b"", b"To: u@d.example\n"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--bytes", type=int, default=500_000)
    parser.add_argument("--slow", type=float, default=1.0)
    parser.add_argument("--rules", action="append", default=[],
                        help="a rule file or directory scanned with as well (repeatable)")
    args = parser.parse_args()
    scanner = trained_scanner(args.workdir, tuple(args.rules))
    scanner.scan(_PLAIN)  # (the rules compile on the first scan: not any unit's time)
    timings = []
    for name, head, unit in UNITS:
        data = head + unit * (args.bytes // len(unit))
        started = time.process_time()
        scanner.scan(data)
        timings.append((time.process_time() - started, name))
    for spent, name in sorted(timings, reverse=True):
        print(f"{spent:7.3f} s  {name}")
    sys.exit(1 if max(timings)[0] > args.slow else 0)


if __name__ == "__main__":
    main()
