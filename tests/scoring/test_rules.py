"""The rule engine on hand-made messages: every rule kind, SpamAssassin syntax, load errors."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.cf import CfReader
from spamkit.rules.compile import BOUNDED_HEADER_LENGTH, expand_replace_tags
from spamkit.rules.rulecache import read_cached, write_cached

MESSAGE = (b"From: \"Deals\" <deals@shop.example>\nTo: you@example.org\n"
           b"Subject: =?utf-8?Q?Cheap_pills?=\nMessage-ID: <1@shop.example>\n"
           b"Content-Type: multipart/alternative; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\nBuy cheap pills today.\n\nSecond paragraph.\n"
           b"--b\nContent-Type: text/html\nX-Part: tagged\n\n"
           b"<p>Buy <b>cheap</b> pills <a href='http://1.2.3.4/buy'>here</a></p>\n--b--\n")

RULES = r"""
header   H_SUBJECT     Subject =~ /cheap pills/i
header   H_RAW         Subject:raw =~ /=\?utf-8\?Q\?/
header   H_ADDR        From:addr =~ /^deals\@shop\.example$/
header   H_NAME        From:name =~ /^Deals$/
header   H_NOT         X-Mailer !~ /./
header   H_UNSET       X-Mailer !~ /./ [if-unset: ]
header   H_EXISTS      exists:Message-ID
header   H_ALL         ALL =~ /^To: you\@/m
mimeheader M_PART      X-Part =~ /tagged/
body     B_PHRASE      /buy cheap pills today/i
body     B_SECOND      /^Second paragraph/
rawbody  R_HTML        /<b>cheap<\/b>/
uri      U_IP          m{^http://\d+\.\d+\.\d+\.\d+/}
full     F_BOUNDARY    /boundary=b/
meta     META_BOTH     H_SUBJECT && U_IP
meta     META_COUNT    (H_SUBJECT + B_PHRASE + R_HTML) >= 3
meta     META_NONE     !H_SUBJECT
header   __SUB         Subject =~ /pills/
meta     META_SUB      __SUB
describe META_BOTH     Subject and IP link together
tflags   META_BOTH     noautolearn
score    META_BOTH     2.5
"""


def hits_for(rules_text: str, raw: bytes = MESSAGE, tmp: Path | None = None) -> dict[str, float]:
    assert tmp is not None
    path = tmp / "test.cf"
    path.write_text(rules_text)
    ruleset = load_rules([path], builtin=False)
    assert not ruleset.report.errors, ruleset.report.errors
    context = MessageContext(raw, parse_message(raw))
    return {hit.name: hit.score for hit in ruleset.evaluate(context, score_set=0)}


def test_every_rule_kind(tmp_path: Path) -> None:
    hits = hits_for(RULES, tmp=tmp_path)
    expected = {"H_SUBJECT", "H_RAW", "H_ADDR", "H_NAME", "H_NOT", "H_UNSET", "H_EXISTS", "H_ALL", "M_PART",
                "B_PHRASE", "B_SECOND", "R_HTML", "U_IP", "F_BOUNDARY", "META_BOTH", "META_COUNT",
                "META_SUB"}
    # H_NOT: an absent header is undef to SpamAssassin 4.0's header rules, which `!~`
    # does not match, so it hits there too (decision 0042)
    assert set(hits) == expected
    assert hits["META_BOTH"] == 2.5 and hits["H_SUBJECT"] == 1.0  # the default score is 1


def test_scores_four_sets_relative_and_zero(tmp_path: Path) -> None:
    text = RULES + "score H_SUBJECT 1 2 3 4\nscore H_SUBJECT (0.5)\nscore H_ADDR 0\n"
    path = tmp_path / "s.cf"
    path.write_text(text)
    ruleset = load_rules([path], builtin=False)
    assert ruleset.rules["H_SUBJECT"].scores == (1.5, 2.5, 3.5, 4.5)
    context = MessageContext(MESSAGE, parse_message(MESSAGE))
    names = {h.name for h in ruleset.evaluate(context, score_set=2)}
    assert "H_ADDR" not in names  # score 0 turns a rule off


@pytest.mark.parametrize("text, message", [
    ("body BAD /unclosed(/\n", "BAD"),
    ("score NEVER_SCORED (1)\n", "relative score for NEVER_SCORED, which has no score"),
    ("score X 1 2\n", "give one score or four"),
    ("meta LOOP_A LOOP_B\nmeta LOOP_B LOOP_A\n", "depend on each other"),
])
def test_load_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.cf"
    path.write_text("# a comment\n" + text)
    ruleset = load_rules([path], builtin=False)
    if message:
        assert any(e.startswith(f"{path}:2") and message in e for e in ruleset.report.errors), \
            ruleset.report.errors


def test_a_catastrophic_regex_is_rejected_at_load(tmp_path: Path) -> None:
    """One RE2 cannot run (a backreference) is rejected; one it can runs there, in
    linear time (decision 0043; tests/scoring/test_linear.py)."""
    path = tmp_path / "slow.cf"
    path.write_text("body SLOW_RULE /(a+a+)+\\1y/\nbody FAST_RULE /cheap/\nbody LINEAR_RULE /(a+a+)+y/\n")
    ruleset = load_rules([path], builtin=False)
    assert "SLOW_RULE" not in ruleset.rules and "FAST_RULE" in ruleset.rules
    assert any("SLOW_RULE" in e and "adversarial" in e for e in ruleset.report.errors)
    assert ruleset.rules["LINEAR_RULE"].re2_form
    raw = b"Subject: x\n\n" + b"a" * 30_000 + b"!\n"  # (a backtracking engine would not finish)
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
    assert "LINEAR_RULE" not in counts


def test_a_rule_that_explodes_on_one_message_is_cut_off(tmp_path: Path) -> None:
    """Past the load probes, a match still has a time budget: the rule just does not hit."""
    path = tmp_path / "late.cf"
    path.write_text("body LATE_BLOWUP /(x+x+)+y/\nbody FAST_RULE /cheap/\n")
    ruleset = load_rules([path], builtin=False)
    assert "LATE_BLOWUP" in ruleset.rules
    raw = b"Subject: cheap\n\n" + b"x" * 5000 + b"\n"
    started = time.perf_counter()
    names = {h.name for h in ruleset.evaluate(MessageContext(raw, parse_message(raw)), score_set=0)}
    assert names == {"FAST_RULE"}
    assert time.perf_counter() - started < 5


def test_unknown_directives_and_evals_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "odd.cf"
    path.write_text("frobnicate yes\nheader NET_RULE eval:check_rbl('x', 'y.example')\n"
                    "body OK_RULE /cheap/\n")
    ruleset = load_rules([path], builtin=False)
    assert ruleset.report.unknown_directives == {"frobnicate": 1}
    assert ruleset.report.skipped == {"eval not implemented": 1}
    assert "OK_RULE" in ruleset.rules and not ruleset.report.errors
    [skipped] = ruleset.report.skipped_rules  # named, for `spamkit lint --skipped`
    assert skipped.describe() == f"{path}:2: NET_RULE: eval not implemented (check_rbl)"
    assert ruleset.report.as_json()["skipped_rules"] == [
        {"rule": "NET_RULE", "origin": f"{path}:2", "reason": "eval not implemented", "detail": "check_rbl"}]


def test_if_and_ifplugin_blocks(tmp_path: Path) -> None:
    text = ("ifplugin Mail::SpamAssassin::Plugin::NoSuchThing\nbody A_SKIPPED /x/\nendif\n"
            "if (version >= 3.004000)\nbody B_KEPT /x/\nelse\nbody C_SKIPPED /x/\nendif\n"
            "if !plugin(Mail::SpamAssassin::Plugin::ReplaceTags)\nbody D_SKIPPED /x/\nendif\n"
            "if can(Mail::SpamAssassin::Conf::feature_welcomelist_blocklist)\nbody E_KEPT /x/\nendif\n")
    path = tmp_path / "if.cf"
    path.write_text(text)
    assert set(load_rules([path], builtin=False).rules) == {"B_KEPT", "E_KEPT"}


def test_replace_tags() -> None:
    reader = CfReader()
    reader.read_text("replace_tag V (?:v|\\\\/)\nreplace_tag I [i1!]\nreplace_inter W1 \\W?\n"
                     "body FUZZY /<inter W1><V><I>/i\nreplace_rules FUZZY\n", "t.cf")
    expanded = expand_replace_tags(reader.parsed.definitions["FUZZY"].text, reader.parsed)
    assert expanded == "/(?:v|\\\\/)\\W?[i1!]/i"


def test_tags_inside_tags_are_replaced_pass_by_pass() -> None:
    """SpamAssassin's FILL_THIS_FORM rules write <FF_ALL> as <FF_A1>|<FF_N1>|..., whose
    regexes hold <ANDOR>: each pass replaces what the last one put in (inter only once)."""
    reader = CfReader()
    reader.read_text("replace_tag ANDOR (?:\\sor\\s|\\sand\\s)\nreplace_tag A1 (?:city|state)<ANDOR>?\n"
                     "replace_tag N1 name\nreplace_tag ALL (?:<A1>|<N1>)\nreplace_inter SEP :\n"
                     "body FORM /<inter SEP><ALL><ALL>/i\nreplace_rules FORM\n"
                     "replace_tag LOOP <LOOP>x\nbody LOOPED /<LOOP>/\nreplace_rules LOOPED\n", "t.cf")
    expanded = expand_replace_tags(reader.parsed.definitions["FORM"].text, reader.parsed)
    a1 = "(?:city|state)(?:\\sor\\s|\\sand\\s)?"
    assert expanded == f"/(?:{a1}|name):(?:{a1}|name)/i"
    # a tag that names itself is replaced as many times as SpamAssassin would, then left
    looped = expand_replace_tags(reader.parsed.definitions["LOOPED"].text, reader.parsed)
    assert looped == "/<LOOP>" + "x" * 6 + "/"


def test_builtin_rules_load_cleanly() -> None:
    from spamkit.rules import BUILTIN_RULES

    ruleset = load_rules([BUILTIN_RULES], builtin=False)  # as a user's file: probed too
    assert not ruleset.report.errors and not ruleset.report.skipped
    assert {"BAYES_00", "BAYES_99", "BAYES_999", "USER_IN_WHITELIST", "USER_IN_BLACKLIST",
            "HTML_ONLY", "URI_IP_HOST", "MISSING_DATE"} <= set(ruleset.rules)


def test_rules_never_raise_on_odd_messages(all_messages: list) -> None:  # type: ignore[type-arg]
    ruleset = load_rules()
    for message in all_messages[::7]:
        context = MessageContext(message.data, parse_message(message.data))
        ruleset.evaluate(context)
    for raw in (b"", b"\x00\xff" * 100, b"Subject: x\n\n" + b"a" * 200_000):
        ruleset.evaluate(MessageContext(raw, parse_message(raw)))


def test_a_header_rule_too_slow_on_a_whole_header_reads_its_start(tmp_path: Path) -> None:
    """Debian's __PDS_TONAME_EQ_TOLOCAL (a backreference, which RE2 cannot run) took
    13.9 s on a To of 4,000 spaces and was rejected, so the scored rules built on it never
    hit. It now reads the first BOUNDED_HEADER_LENGTH characters of its header, where all
    of its 98 matches in the corpus are (decision 0057). Still rejected: the pattern on
    ALL (the whole header block) or in the body, and a header rule too slow even there."""
    pattern = "/^\\s*['\"]?([^'\"]+)['\"]? <?\\1\\@/"
    path = tmp_path / "rules.cf"
    path.write_text(f"header TONAME_EQ_TOLOCAL To:raw =~ {pattern}\n"
                    f"header NOT_TONAME To:raw !~ {pattern}\n"
                    f"header ALL_TONAME ALL =~ {pattern}\n"
                    f"body BODY_TONAME {pattern}\n"
                    "header EXPONENTIAL Subject =~ /(a+a+)+\\1y/\n")
    ruleset = load_rules([path], builtin=False, cache=False)
    assert set(ruleset.rules) == {"TONAME_EQ_TOLOCAL", "NOT_TONAME"}
    assert ruleset.report.skipped == {"too slow": 3} and len(ruleset.report.errors) == 3
    assert [(bounded.rule, bounded.characters) for bounded in ruleset.report.bounded_rules] == [
        ("TONAME_EQ_TOLOCAL", BOUNDED_HEADER_LENGTH), ("NOT_TONAME", BOUNDED_HEADER_LENGTH)]
    for to, hits in (("john <john@example.com>", True), ('"John.Smith" <John.Smith@example.com>', True),
                     ("john <jim@example.com>", False), (" " * 4000 + "x", False),
                     # a match that ends past the bound is not found: SpamAssassin finds it
                     ("x" * 200 + " <" + "x" * 200 + "@example.com>", False)):
        raw = f"From: a@example.org\nTo: {to}\nSubject: s\n\nbody\n".encode()
        counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
        assert ("TONAME_EQ_TOLOCAL" in counts) == hits, to
        assert ("NOT_TONAME" in counts) != hits, to


def test_a_second_load_from_the_rule_cache_gives_the_same_rules_and_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex verdicts kept by the first load (spamkit.rules.rulecache) give the same
    rules, the same errors with their file and line, and the same hits."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "rules.cf"
    path.write_text("body SLOW_RULE /(a+a+)+\\1y/\nbody BROKEN /(unclosed/\n"
                    "body CHEAP /\\bcheap\\s+pills\\b/i\nheader FREE Subject =~ /free/i\n"
                    "body LINEAR /(a+a+)+y/\n")
    raw = b"Subject: Free stuff\n\nCheap   pills here\n"
    loads = [load_rules([path], builtin=False) for _ in range(2)]
    first, second = loads
    assert list(first.rules) == list(second.rules) == ["CHEAP", "FREE", "LINEAR"]
    # a rule RE2 runs (decision 0043) keeps its form through the cache
    assert second.rules["LINEAR"].re2_form == first.rules["LINEAR"].re2_form != ""
    assert second.rules["LINEAR"].compiled is None
    assert first.report.errors == second.report.errors
    assert any(e.startswith(f"{path}:1") and "adversarial" in e for e in second.report.errors)
    assert any(e.startswith(f"{path}:2") for e in second.report.errors)
    assert second.rules["CHEAP"].compiled is None  # not compiled again until it is needed
    assert second.rules["CHEAP"].literals == first.rules["CHEAP"].literals == ("cheap",)
    for ruleset in loads:
        hits = {h.name for h in ruleset.evaluate(MessageContext(raw, parse_message(raw)), 0)}
        assert hits == {"CHEAP", "FREE"}
    for cached in (tmp_path / "cache" / "spamkit").glob("rules-*.json"):
        cached.write_text("{not json")
    again = load_rules([path], builtin=False)  # a damaged cache is judged again, not trusted
    assert list(again.rules) == ["CHEAP", "FREE", "LINEAR"] and again.report.errors == first.report.errors


def test_stale_cache_files_are_pruned_and_used_ones_kept(tmp_path: Path) -> None:
    """Rule updates leave compiled rules behind: files no start used for 30 days go."""
    stale, used = tmp_path / "rules-old.json", tmp_path / "multiscan-used.hsdb"
    for path in (stale, used):
        path.write_bytes(b"{}")
        os.utime(path, (time.time() - 40 * 86400,) * 2)
    assert read_cached(used) == b"{}"  # a start reads it: it is fresh again
    write_cached(tmp_path / "rules-new.json", b"{}")
    assert not stale.exists() and used.exists() and (tmp_path / "rules-new.json").exists()
    write_cached(tmp_path / "fresh" / "rules-x.json", b"{}")
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700


def test_paragraphs_without_the_literal_are_skipped_and_hits_still_counted(tmp_path: Path) -> None:
    """A rule tried paragraph by paragraph skips those lacking its required literal; the
    ones that have it are searched as before (with `multiple`, each counts)."""
    path = tmp_path / "rules.cf"
    path.write_text("body ANCHORED /^cheap\\s+pills$/i\ntflags ANCHORED multiple\n")
    ruleset = load_rules([path], builtin=False)
    rule = ruleset.rules["ANCHORED"]
    assert not rule.paragraph_local and rule.literals == ("cheap",)
    raw = b"Subject: x\n\nCHEAP pills\n\nnothing here\n\ncheap   pills\n\ncheap pills, now\n"
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), None)
    assert counts == {"ANCHORED": 2}
