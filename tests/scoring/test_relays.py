"""The relays read from Received headers, the trust line, and the rules that use them.

On the standard split's test fold these give what SpamAssassin gives (RDNS_NONE on 1,246
of 1,247 messages, ALL_TRUSTED, NO_RELAYS and FSL_HELO_NON_FQDN_1 on all; the figures
are in docs/decisions/0010); here each Received format is pinned on a line of its own.
"""

from __future__ import annotations

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
