"""Structure, not length: many parts, deep nesting, many short lines, each at a count n
and at 4n, timed through the whole scan and through the attachment check.

`python3 -m tests.fuzz.structure --workdir DIR [--rules PATH]`

`pumped` repeats one unit to the scan cap, which finds work that grows with a field's
length. What grows with a count (parts, fields, links) can hide there: a scan of 4,500
To lines took 0.28 s where 1,125 took 0.02. So each shape here is built at n and at 4n.
Linear work takes about 4 times as long at 4n. A ratio over 7, on a time over 0.1 s, is
flagged. The attachment check reads the whole message (SmtpMaxMessageSize, 15 MB), so
each shape's 4n message is listed again at about 10 MB with tracemalloc on. A peak over
20 times the message is flagged. Exits 1 when anything is flagged. Not a test: tests
never assert timings. (Decision 0046 has what it found.)
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from spamkit.message import ParseLimits, list_attachments
from tests.fuzz.engine import trained_scanner

_HEAD = b"From: a@example.com\nTo: b@example.org\nSubject: x\nDate: Mon, 1 Jan 2001 00:00:00 +0000\n"
_HTML = _HEAD + b"Content-Type: text/html\n\n"


def _multipart(parts: list[bytes], subtype: bytes = b"mixed") -> bytes:
    return (_HEAD + b"Content-Type: multipart/" + subtype + b"; boundary=B\n\n"
            + b"".join(b"--B\n" + part + b"\n" for part in parts) + b"--B--\n")


def _nested(count: int) -> bytes:
    return (_HEAD + b"Content-Type: multipart/mixed; boundary=B0\n\n"
            + b"".join(b"--B%d\nContent-Type: multipart/mixed; boundary=B%d\n\n" % (i, i + 1) for i in range(count))
            + b"--B%d\n\nx\n" % count)


# (name, count n, the message for a count)
SHAPES: tuple[tuple[str, int, Callable[[int], bytes]], ...] = (
    ("To lines", 1_000, lambda n: b"".join(b"To: u%d@d%d.example\n" % (i, i) for i in range(n)) + _HEAD + b"\nhi"),
    ("To addresses", 5_000, lambda n: b"To: " + b", ".join(b"u%d@d.example" % i for i in range(n)) + b"\n"
     + _HEAD + b"\nhi"),
    ("Received lines", 150, lambda n: b"".join(
        b"Received: from h%d.example ([%d.%d.0.9]) by mx.example; Mon, 1 Jan 2001 00:00:00 +0000\n"
        % (i, 20 + i % 200, i // 200) for i in range(n)) + _HEAD + b"\nhi"),
    ("header fields", 1_000, lambda n: b"".join(b"X-H%d: v\n" % i for i in range(n)) + _HEAD + b"\nhi"),
    ("encoded words", 5_000, lambda n: b"Subject: " + b" ".join(b"=?utf-8?q?w%d?=" % i for i in range(n))
     + b"\nFrom: a@b.example\n\nhi"),
    ("text parts", 200, lambda n: _multipart([b"Content-Type: text/plain\n\nw%d http://h%d.example/" % (i, i)
                                              for i in range(n)])),
    ("alternative parts", 200, lambda n: _multipart([b"Content-Type: text/%s\n\nsame %d" % (
        b"html" if i % 2 else b"plain", i) for i in range(n)], b"alternative")),
    ("named attachments", 200, lambda n: _multipart([
        b"Content-Type: application/octet-stream; name=f%d.exe\nContent-Transfer-Encoding: base64\n\nAAAA" % i
        for i in range(n)])),
    ("empty parts", 5_000, lambda n: _HEAD + b"Content-Type: multipart/mixed; boundary=B\n\n" + b"--B\n" * n),
    ("nested multiparts", 20, _nested),
    ("nested message/rfc822", 20, lambda n: _HEAD + b"Content-Type: message/rfc822\n\n" * n + b"\nx"),
    ("text links", 5_000, lambda n: _HEAD + b"\n" + b" ".join(b"http://h%d.e%d.example/p" % (i, i) for i in range(n))),
    ("html links", 5_000, lambda n: _HTML + b"".join(b'<a href="http://h%d.example/">t</a>' % i for i in range(n))),
    ("html nested divs", 5_000, lambda n: _HTML + b"<div>" * n + b"x" + b"</div>" * n),
    ("html unclosed fonts", 5_000, lambda n: _HTML + b"".join(b"<font color=#%06x>w" % i for i in range(n))),
    ("html comments", 5_000, lambda n: _HTML + b"".join(b"<!-- c%d -->w " % i for i in range(n))),
    ("html table cells", 5_000, lambda n: _HTML + b"<table>" + b"<tr><td>c</td></tr>" * n),
    ("body lines", 5_000, lambda n: _HEAD + b"\n" + b"\n".join(b"l%d" % i for i in range(n))),
    ("body addresses", 5_000, lambda n: _HEAD + b"\n" + b" ".join(b"u%d@d%d.example" % (i, i) for i in range(n))),
    ("uuencoded files", 5_000, lambda n: _HEAD + b"\n" + b"begin 644 f%d.exe\n#86)C\n`\nend\n" * n),
    ("quoted-printable soft breaks", 5_000, lambda n: _HEAD + b"Content-Transfer-Encoding: quoted-printable\n\n"
     + b"ab=\n" * n),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rules", action="append", default=[],
                        help="a rule file or directory scanned with as well (repeatable)")
    args = parser.parse_args()
    scanner = trained_scanner(args.workdir, tuple(args.rules))
    scanner.scan(_HEAD + b"\nhi")  # (the rules compile on the first scan: not any shape's time)
    whole = ParseLimits(max_message_bytes=10**9, max_parts=10_000, max_boundary_length=10**9)
    flagged = False
    for name, count, make in SHAPES:
        times = []
        for n in (count, 4 * count):
            started = time.process_time()
            scanner.scan(make(n))
            times.append(time.process_time() - started)
        ratio = times[1] / max(times[0], 1e-4)
        big = make(4 * count)
        big = make(4 * count * max(1, 10_000_000 // len(big)))
        tracemalloc.start()
        try:
            list_attachments(big, whole)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        slow = ratio > 7 and times[1] > 0.1
        hungry = peak > 20 * len(big)
        flagged = flagged or slow or hungry
        print(f"{name:30s} scan {times[0]:6.3f} s, 4n {times[1]:6.3f} s (x{ratio:4.1f}){' <<' if slow else '   '}"
              f"  attachment check of {len(big) / 1e6:4.1f} MB: peak {peak / 1e6:6.1f} MB{' <<' if hungry else ''}",
              flush=True)
    sys.exit(1 if flagged else 0)


if __name__ == "__main__":
    main()
