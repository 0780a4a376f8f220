"""SpamAssassin's authenticated welcomelists (welcomelist_auth, def_welcomelist_auth,
[def_]welcomelist_from_dkim, [def_]welcomelist_from_spf): Debian's 60_welcomelist_auth.cf
lists 943 senders this way, each worth -7.5 when its SPF or DKIM passes. They read only
what the SMTP filter verified (Verified), never a header a sender could have written."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamkit.message import parse_message
from spamkit.rules import MessageContext, RuleSet, load_rules
from spamkit.rules.context import Verified

RULES = """
def_welcomelist_auth *@bank.example
def_whitelist_auth *@gone.example
unwelcomelist_auth *@gone.example
def_welcomelist_from_dkim *@news.example mailer.example
def_welcomelist_from_dkim *@shop.example *.esp.example
def_welcomelist_from_dkim joe@list.example
def_welcomelist_from_spf alerts@spf.example
welcomelist_auth boss@corp.example
welcomelist_from_dkim *@partner.example
unwelcomelist_from_dkim *@partner.example
"""
EVAL_RULES = {
    "USER_IN_DEF_DKIM_WL": "check_for_def_dkim_welcomelist_from",
    "USER_IN_DEF_SPF_WL": "check_for_def_spf_whitelist_from",  # (4.0 keeps the old names)
    "USER_IN_DKIM_WELCOMELIST": "check_for_dkim_welcomelist_from",
    "USER_IN_SPF_WELCOMELIST": "check_for_spf_welcomelist_from",
}


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "welcome.cf"
    path.write_text(RULES + "".join(f"header {name} eval:{function}()\ntflags {name} nice net\n"
                                    f"score {name} -7.5\n" for name, function in EVAL_RULES.items()))
    loaded = load_rules([path], builtin=False)
    assert set(loaded.rules) == set(EVAL_RULES), loaded.report.as_json()  # net, and they run
    assert not loaded.report.unknown_directives
    return loaded


def _hits(ruleset: RuleSet, author: str, sender: str | None = None, verified: Verified | None = None,
          headers: str = "") -> set[str]:
    raw = (f"{headers}From: Someone <{author}>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n").encode()
    context = MessageContext(raw, parse_message(raw), envelope_from=sender, verified=verified)
    return {hit.name for hit in ruleset.evaluate(context, score_set=0)}


def test_dkim_needs_a_verified_signature_by_a_domain_the_entry_accepts(ruleset: RuleSet) -> None:
    def dkim(author: str, *signers: str) -> set[str]:
        return _hits(ruleset, author, verified=Verified(dkim_domains=signers)) & {
            "USER_IN_DEF_DKIM_WL", "USER_IN_DKIM_WELCOMELIST"}

    # welcomelist_auth: only the author's own domain signs (an author domain signature)
    assert dkim("a@bank.example", "bank.example") == {"USER_IN_DEF_DKIM_WL"}
    assert dkim("a@bank.example", "other.example") == set()
    assert dkim("a@bank.example", "sub.bank.example") == set()
    assert dkim("boss@corp.example", "corp.example") == {"USER_IN_DKIM_WELCOMELIST"}
    assert dkim("intern@corp.example", "corp.example") == set()
    # a named signing domain, and only it
    assert dkim("a@news.example", "mailer.example") == {"USER_IN_DEF_DKIM_WL"}
    assert dkim("a@news.example", "news.example") == set()
    # "*.esp.example": any domain below it, not itself
    assert dkim("a@shop.example", "eu.esp.example") == {"USER_IN_DEF_DKIM_WL"}
    assert dkim("a@shop.example", "esp.example") == set()
    # no signing domain given: the author's own
    assert dkim("joe@list.example", "list.example") == {"USER_IN_DEF_DKIM_WL"}
    assert dkim("ann@list.example", "list.example") == set()
    # taken off again (the un... forms take the entry off the list and its def_ list)
    assert dkim("a@gone.example", "gone.example") == set()
    assert dkim("a@partner.example", "partner.example") == set()


def test_spf_needs_the_envelope_sender_listed_and_a_pass(ruleset: RuleSet) -> None:
    def spf(sender: str | None, result: str) -> set[str]:
        return _hits(ruleset, "x@example.org", sender, Verified(spf=result)) & {
            "USER_IN_DEF_SPF_WL", "USER_IN_SPF_WELCOMELIST"}

    assert spf("alerts@spf.example", "pass") == {"USER_IN_DEF_SPF_WL"}
    assert spf("<alerts@spf.example>", "pass") == {"USER_IN_DEF_SPF_WL"}
    assert spf("alerts@spf.example", "softfail") == set()
    assert spf("other@spf.example", "pass") == set()
    assert spf("a@bank.example", "pass") == {"USER_IN_DEF_SPF_WL"}  # def_welcomelist_auth too
    assert spf("boss@corp.example", "pass") == {"USER_IN_SPF_WELCOMELIST"}
    assert spf(None, "pass") == set()  # a bounce: its SPF was its HELO name's


def test_what_a_sender_writes_earns_nothing(ruleset: RuleSet) -> None:
    """Results in the message's own headers are not the filter's: a scan without
    Verified (`spamkit check`, spamd) never hits these rules, whatever the headers say."""
    forged = ("Authentication-Results: mx.example.org; dkim=pass header.d=bank.example\r\n"
              "Received-SPF: pass (mx.example.org) receiver=mx.example.org; identity=mailfrom;\r\n")
    assert _hits(ruleset, "a@bank.example", "a@bank.example", None, forged) == set()
    assert _hits(ruleset, "a@bank.example", "a@bank.example", Verified(spf="fail"), forged) == set()


def test_malformed_lines_name_themselves(tmp_path: Path) -> None:
    path = tmp_path / "bad.cf"
    path.write_text("def_welcomelist_from_dkim a@b.example c.example d.example\ndef_welcomelist_auth\n")
    errors = load_rules([path], builtin=False).report.errors
    assert any(f"{path}:1" in error and "one address and at most one signing domain" in error for error in errors)
    assert any(f"{path}:2" in error and "needs an address" in error for error in errors)
