"""The relays read from Received headers, the trust line, and the rules that use them.

On the standard split's test fold these give what SpamAssassin gives (RDNS_NONE on 1,246
of 1,247 messages, ALL_TRUSTED, NO_RELAYS and FSL_HELO_NON_FQDN_1 on all; the figures
are in docs/decisions/0010); here each Received format is pinned on a line of its own.
"""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.relays import Relay, Relays, parse_received


@pytest.mark.parametrize(("line", "ip", "rdns", "helo", "by"), [
    # sendmail / Postfix: from HELO (RDNS [IP])
    ("from mail.example.com (mx.example.com [192.0.2.10]) by in.example.org (8.12.2) with ESMTP id g1",
     "192.0.2.10", "mx.example.com", "mail.example.com", "in.example.org"),
    # no reverse DNS: ([IP]) or "unknown"
    ("from xent.com ([64.161.22.236]) by dogma.example.org (8.11.6/8.11.6) with ESMTP id g7MJ",
     "64.161.22.236", "", "xent.com", "dogma.example.org"),
    ("from client (unknown [198.51.100.7]) by mx.example.net (Postfix) with ESMTP id 4A",
     "198.51.100.7", "", "client", "mx.example.net"),
    # sendmail's doubt about the name changes nothing about it
    ("from cpu59.example.com (slashdot.org [64.28.67.73] (may be forged)) by dogma.example.org"
     " (8.11.6) with ESMTP id g7U2", "64.28.67.73", "slashdot.org", "cpu59.example.com",
     "dogma.example.org"),
    # qmail: from RDNS (HELO helo) (IP)
    ("from host.example.net (HELO smtp.example.net) (203.0.113.5) by mail.example.org with SMTP",
     "203.0.113.5", "host.example.net", "smtp.example.net", "mail.example.org"),
    # Exim: from RDNS ([IP] helo=HELO)
    ("from a.example.com ([203.0.113.9] helo=b.example.com) by c.example.org with esmtp (Exim 4.10)",
     "203.0.113.9", "a.example.com", "b.example.com", "c.example.org"),
    # a bare address (webmail, virus scanners), with or without comments
    ("from 216.30.74.2 by lw15fd.law15.hotmail.msn.com with HTTP",
     "216.30.74.2", "", "", "lw15fd.law15.hotmail.msn.com"),
    ("from 64.110.46.132 (proxying for 192.168.44.43, unknown) (SquirrelMail authenticated user al)"
     " by mpsc.example with HTTP", "64.110.46.132", "", "", "mpsc.example"),
    ("from 15.145.8.186 by fowey.example.com (InterScan E-Mail VirusWall NT)",
     "15.145.8.186", "", "", "fowey.example.com"),
    # qmail, the client's login after its address
    ("from unknown (HELO ?192.168.0.100?) (user@212.18.241.211 with plain) by smtp.example.com with SMTP",
     "212.18.241.211", "", "?192.168.0.100?", "smtp.example.com"),
    # a handover on the machine itself, in a known format, is a hop (as SpamAssassin has it)
    ("from lugh (root@localhost [127.0.0.1]) by lugh.example.org (8.9.3/8.9.3) with ESMTP id HAA1",
     "127.0.0.1", "localhost", "lugh", "lugh.example.org"),
    # a client that said HELO by: the receiving host is still the one after its comment
    # (hypothesis found this in the filter's own Received header)
    ("from by (unknown [192.0.2.7]) by mx.example.org (spamkit) with ESMTP id ABC",
     "192.0.2.7", "", "by", "mx.example.org"),
    ("from By (unknown [192.0.2.7]) by mx.example.org (Postfix) with ESMTP id ABC",
     "192.0.2.7", "", "By", "mx.example.org"),
])
def test_received_formats(line: str, ip: str, rdns: str, helo: str, by: str) -> None:
    relay = parse_received(line + "; Tue, 25 Nov 2026 10:00:00 +0000")
    assert isinstance(relay, Relay)
    assert (relay.ip, relay.rdns, relay.helo, relay.by) == (ip, rdns, helo, by)


@pytest.mark.parametrize("line", [
    "from mail.example.org by mail.example.org; Tue, 25 Nov 2026 10:00:00 +0000",
    "by mail.example.org (Postfix, from userid 1000) id 2; Tue, 25 Nov 2026 10:00:00 +0000",
    "via dmail-2002(12) for +lists/freebsd/ports; Mon, 9 Sep 2002 12:21:16 -0500",
])
def test_lines_that_are_not_hops(line: str) -> None:
    assert parse_received(line) is False


def test_trust_ends_at_the_first_public_address() -> None:
    relays = Relays([
        "from phobos [127.0.0.1] by localhost with IMAP (fetchmail-5.9.0) for jm@localhost",
        "from gate.example.org (gate.example.org [10.0.0.2]) by in.example.org with ESMTP id A11",
        "from sender.example.net (sender.example.net [192.0.2.10]) by gate.example.org with ESMTP id B22",
        "from bot ([198.51.100.7]) by sender.example.net with SMTP id C33",
    ])
    assert [r.ip for r in relays.trusted] == ["10.0.0.2"]
    assert [r.ip for r in relays.untrusted] == ["192.0.2.10", "198.51.100.7"]
    external = relays.pseudo_headers["X-Spam-Relays-External"]
    assert external.startswith("[ ip=192.0.2.10 rdns=sender.example.net helo=sender.example.net"
                               " by=gate.example.org ident= envfrom= intl=0 id=B22 auth= msa=0 ]")
    assert relays.pseudo_headers["X-Spam-Relays-Internal"].endswith("intl=1 id=A11 auth= msa=0 ]")


def test_an_originating_ip_header_is_the_last_hop() -> None:
    """SpamAssassin 4 adds the address X-Originating-IP (and its kin) names as the oldest
    relay: the webmail user's own, behind the freemail's servers."""
    raw = (b"Received: from hotmail.com (f1.law15.hotmail.com [64.4.23.199]) by mx.example.org"
           b" (Postfix) with ESMTP id 1\nX-Originating-IP: [216.30.74.2]\n\nhi\n")
    context = MessageContext(raw, parse_message(raw))
    assert [r.ip for r in context.relays.untrusted] == ["64.4.23.199", "216.30.74.2"]


RECEIVED_AS_SPAMASSASSIN_READS_IT = [
    (  # Gmail's own hop, bare IPv6 in brackets and a reverse name ending in a dot
        "from mail-sor-f41.google.com (mail-sor-f41.google.com. [2607:f8b0:4864:20::62d]) by mx.google.com"
        " with SMTPS id x5sor123",
        # Exim writes IPv6 bare too, with and without a reverse name
        "from client.example.net ([2001:db8::5] helo=client.example.net) by mx.example.org with esmtp"
        " (Exim 4.96) id 1abc",
        "from [2001:db8::7] (helo=c2.example.net) by mx2.example.org with esmtp (Exim 4.96) id 1abd",
    ),
    (  # an IPv4 client on an IPv6 socket, and Postfix's "IPv6:" in capitals and written out
        "from helo.example.com. (rdns.example.com. [IPv6:::ffff:198.51.100.3]) by mx.example.org"
        " (Postfix) with ESMTP id 4AB",
        "from h2.example.com (r2.example.com [IPv6:2001:DB8::A]) by mx.example.org (Postfix) with ESMTP id 4AC",
        "from h3.example.com (r3.example.com [2001:0db8:0000:0000:0000:0000:0000:000b]) by mx.example.org"
        " (Postfix) with ESMTP id 4AD",
    ),
    (  # Gmail's "by" an IPv6 address, and its webmail's hop from the user's address
        "by 2002:a05:6a10:a0c9:b0:4f1:6b2c:1ab with SMTP id q9csp123",
        "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41]) by mx.google.com"
        " with SMTPS id x5",
        "from [2a00:1450:4864:20::62d] by 2002:a17:90b:3b4a:b0:2c9:1234:5678 with HTTP",
    ),
    (  # webmail hops (logged in: trusted), a bracketed address with no HELO, a port
        "from [198.51.100.9] by web.example.com with HTTP",
        "from [2a00:1450:4864:20::62d] by 2002:a17:90b:3b4a:b0:2c9:1234:5678 with HTTP",
        "from [198.51.100.10] (helo=x) by mx.example.org:25 with SMTP id abcd",
    ),
]


def test_ipv6_hops_are_read_as_spamassassin_reads_them(tmp_path: Path) -> None:
    """Modern mail comes over IPv6, and Gmail, Microsoft and Exim write the address bare
    ("[2607:f8b0:...]"); before, only "IPv6:"-prefixed addresses were read. What Debian's
    SpamAssassin 4 makes of the same headers, entry for entry, trusted and untrusted,
    with an IPv6 address in X-Originating-IP on the first message."""
    import subprocess

    for number, lines in enumerate(RECEIVED_AS_SPAMASSASSIN_READS_IT):
        raw = ("".join(f"Received: {line}; Tue, 1 Dec 2026 10:00:00 +0000\n" for line in lines)
               + ("X-Originating-IP: [2001:db8:1::9]\n" if number == 0 else "")
               + "From: a@example.net\nSubject: hi\n\nhi\n").encode()
        theirs = subprocess.run(["spamassassin", "-L", "-t", "--cf=add_header all RU _RELAYSUNTRUSTED_",
                                 "--cf=add_header all RT _RELAYSTRUSTED_"],
                                input=raw, capture_output=True, timeout=300, check=True).stdout
        head = email.message_from_bytes(theirs)
        ours = MessageContext(raw, parse_message(raw)).relays.pseudo_headers
        for tag, name in (("X-Spam-RU", "X-Spam-Relays-Untrusted"), ("X-Spam-RT", "X-Spam-Relays-Trusted")):
            assert ours[name] == " ".join((head[tag] or "").split()), (number, name)
    first = RECEIVED_AS_SPAMASSASSIN_READS_IT[0]
    raw = ("".join(f"Received: {line}\n" for line in first) + "X-Originating-IP: [2001:db8:1::9]\n\nhi\n").encode()
    assert MessageContext(raw, parse_message(raw)).relays.pseudo_headers[
        "X-Spam-Relays-Untrusted"].count("[ ip=") == len(first) + 1


def test_what_only_looks_like_a_bare_ipv6_address_is_no_relay() -> None:
    assert parse_received("from h (h [dead:beef:cafe]) by mx.example.org with SMTP id 1") is None
    assert parse_received("from h (h [12:30:45]) by mx.example.org with SMTP id 1") is None


def test_an_authenticated_hop_is_trusted() -> None:
    relays = Relays(["from laptop (dsl.example.net [198.51.100.8]) by smtp.example.org"
                     " with ESMTPA id 7"])
    assert [r.auth for r in relays.trusted] == ["ESMTPA"] and not relays.untrusted


RULES = r"""
header __RDNS_NONE   X-Spam-Relays-External =~ /^[^\]]+ rdns= /
meta   RDNS_NONE     __RDNS_NONE
header ALL_TRUSTED   eval:check_all_trusted()
header NO_RELAYS     eval:check_no_relays()
tflags ALL_TRUSTED   nice
"""


def _hits(tmp_path: Path, head: bytes) -> tuple[set[str], float]:
    path = tmp_path / "relays.cf"
    path.write_text(RULES)
    ruleset = load_rules([path], builtin=False)
    assert not ruleset.report.errors and not ruleset.report.skipped
    raw = head + b"From: a@example.net\nSubject: hi\n\nbody\n"
    context = MessageContext(raw, parse_message(raw))
    hits = ruleset.evaluate(context, 0)
    return {hit.name for hit in hits}, sum(hit.score for hit in hits)


def test_rules_on_the_relays(tmp_path: Path) -> None:
    no_rdns = b"Received: from bot ([198.51.100.7]) by mx.example.org with SMTP id 3\n"
    assert _hits(tmp_path, no_rdns)[0] == {"RDNS_NONE"}
    inside = b"Received: from pc (pc.lan [192.168.1.20]) by mx.example.org with ESMTP id 4\n"
    names, score = _hits(tmp_path, inside)
    assert names == {"ALL_TRUSTED"} and score == -1.0  # a `nice` rule's default score
    assert _hits(tmp_path, b"")[0] == {"NO_RELAYS"}
