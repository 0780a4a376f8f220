"""The one-pass Hyperscan prefilter (spamkit.rules.multiscan) must never hide a match.

Its rewritten patterns must match wherever the rule's own regex does, on any text; the
rule hits with and without it must be the same on real mail; a damaged cache must be
rebuilt, not trusted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
import spamkit.rules as rules_package
import spamkit.rules.multiscan as multiscan
from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.multiscan import MultiScan, available, superset_patterns
from spamkit.rules.perl_regex import compile_perl, superset_for
from tests.scoring.test_spamassassin_rules import DEBIAN_RULES, require_debian_rules

hyperscan = pytest.importorskip("hyperscan")  # no wheel for this platform: nothing to test
pytestmark = pytest.mark.skipif(not available(), reason="Hyperscan does not run on this processor")

# (pattern, ignorecase): the constructs SpamAssassin's rules use, and the edges of the
# rewrite: case folding beyond Latin-1 (the Kelvin sign is a "k", the long s an "s"),
# Unicode classes, anchors at line edges, lookarounds, backreferences, big repeats.
PATTERNS = [
    (r"cheap\s+v[i1]agra", True), (r"\bkiss\b", True), (r"(?i)stra(?:ss|ß)e", False),
    (r"^\w{3,}\s*$", False), (r"[^\sa-z]{2}", False), (r"\d{2}[.,]\d", False),
    (r"(?<=\s)ab(?!c)", False), (r"(x)y\1", False), (r"a.{0,100}b", False), (r"a.b", False),
    (r"[À-Ý]é", True), (r"\Aab", False), (r"ab\z", False), (r"[^\W\d]{4}", False),
    ("\u212a", False), ("[\u2000-\u200a]x", False), (r"(?:^|\s)free(?:$|\W)", True),
    (r"[^k]", True), (r"\S\s\S", False), (r"[\w.]+@\w+", False),
]
ALPHABET = list("abckKsSxyé\u00c9\u00df \n\t1_.,@?-") + ["\u212a", "\u017f", "\u2003", "\u0661",
                                                          "\u00a0", "\u1e9e", "\x1c"]


TESTS = {i: f"/{pattern}/{'i' if ignorecase else ''}" for i, (pattern, ignorecase) in enumerate(PATTERNS)}


@pytest.fixture(scope="module", params=["hyperscan", "re2"])
def scan(request: pytest.FixtureRequest) -> MultiScan:
    """All the patterns in one database, as the rule set builds it (a combination once lost
    matches that each pattern alone found: docs/decisions/0011); and again with every
    pattern left to RE2, as only the largest are in use, so that the edges above go
    through RE2 as well."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "re2":
            pytest.importorskip("re2")
            patch.setattr(multiscan, "RE2_MIN_LENGTH", 0)
        built = MultiScan({"body": TESTS}, superset_for, cache_dir=None)
    assert built.covered["body"] == set(TESTS), "every pattern gets a prefilter"
    if request.param == "re2":
        assert built.by_re2["body"].keys() == set(TESTS), "every pattern is left to RE2"
    return built


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(ALPHABET), max_size=10).map("".join),
                min_size=1, max_size=4))
def test_a_match_in_any_paragraph_is_a_match_in_the_scan(scan: MultiScan, paragraphs: list[str]
                                                         ) -> None:
    joined = "\n".join(paragraphs)
    possible = scan.candidates("body", joined)
    for test_id, test in TESTS.items():
        if any(compile_perl(test).search(paragraph) for paragraph in paragraphs):
            assert test_id in possible, (test, paragraphs)


def test_the_prefilter_does_rule_out(scan: MultiScan) -> None:
    """Not vacuous: on a text none of them match, most rewritten patterns say so."""
    possible = scan.candidates("body", "zzz zzz")
    assert len(possible) <= 3, [TESTS[i] for i in possible]


def test_posix_classes_get_no_rewrite() -> None:
    """Python's parser would read [[:punct:]] as a class of "[:punct" and a literal "]"."""
    assert superset_patterns(r"[[:punct:]]abc") == []


def test_looser_forms_are_runs_of_the_whole() -> None:
    """A match of the whole contains a match of any contiguous run of its sequence."""
    forms = [form[0] for form in superset_patterns(r"(?:^|\s)alpha\s+(?:beta\s+gamma)\s+delta(?:x)?")
             if len(form) == 1]
    assert len(forms) >= 3
    assert all(form in forms[0] and len(form) < len(forms[0]) for form in forms[1:])
    assert not any(form.endswith(b"?") for form in forms[1:])  # no optional edges


def test_a_big_alternation_is_split_into_one_pattern_per_alternative() -> None:
    forms = superset_patterns(r"x(?:ab|cd|ef)y")
    assert (b"xaby", b"xcdy", b"xefy") in forms
    assert superset_patterns(r"(?<=x)\b") == []  # nothing to scan for: no prefilter
    assert superset_patterns(r"(?(1)a|b)") == []  # a conditional: not rewritten


def test_same_hits_with_and_without_on_the_corpus(all_messages: list[CorpusMessage],
                                                  tmp_path: Path) -> None:
    require_debian_rules()
    fast = load_rules([DEBIAN_RULES], builtin=False)
    scan = fast.prepare_multiscan(tmp_path / "cache")
    assert scan is not None
    covered = [r for r in fast.rules.values() if r.scan_id is not None]
    assert len(covered) > 700  # of ~780 body, rawbody and uri rules
    plain = load_rules([DEBIAN_RULES], builtin=False, multiscan=False)
    for message in all_messages[3::20]:
        parsed = parse_message(message.data)
        assert fast.match_counts(MessageContext(message.data, parsed), None) == \
            plain.match_counts(MessageContext(message.data, parsed), None), message.path
    # a second start loads the compiled databases instead of compiling them
    again = load_rules([DEBIAN_RULES], builtin=False)
    again.prepare_multiscan(tmp_path / "cache")
    assert [r.scan_id for r in again.rules.values()] == [r.scan_id for r in fast.rules.values()]


def test_re2_rules_out_what_hyperscan_would_let_through(tmp_path: Path) -> None:
    """SpamAssassin's FILL_THIS_FORM_SHORT2 (~12 kB rewritten) is left to RE2, which rules
    out a plain sentence and lets a form to fill in through; Hyperscan's prefilter mode
    loosens the same pattern until the plain sentence gets through. Kept in the cache."""
    pytest.importorskip("re2")
    require_debian_rules()
    ruleset = load_rules([DEBIAN_RULES], builtin=False, multiscan=False)
    test = ruleset.rules["__FILL_THIS_FORM_SHORT2"].regex_source
    assert sum(map(len, superset_for(test, False)[0])) >= multiscan.RE2_MIN_LENGTH
    scan = MultiScan({"body": {7: test, 8: "/cheap\\s+pills/i"}}, superset_for, tmp_path)
    assert scan.by_re2["body"].keys() == {7} and scan.covered["body"] == {7, 8}
    plain = "Thank you for your order. The parcel leaves our warehouse on Monday."
    form = "Your full name: ______\nYour address: ______\nYour phone number: ______\n"
    assert compile_perl(test).search(form) and not compile_perl(test).search(plain)
    assert scan.candidates("body", plain) == set()
    assert scan.candidates("body", form) == {7}
    assert scan.candidates("body", form + "CHEAP pills") == {7, 8}
    again = MultiScan({"body": {7: test, 8: "/cheap\\s+pills/i"}}, superset_for, tmp_path)
    assert again.by_re2["body"].keys() == {7}, "from the cache"
    assert again.candidates("body", plain) == set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multiscan, "RE2_MIN_LENGTH", 10**9)
        hyperscan_alone = MultiScan({"body": {7: test}}, superset_for, None)
    assert hyperscan_alone.candidates("body", plain) == {7}, "the case RE2 is there for"


def test_re2_gives_each_pattern_more_memory_than_its_default(tmp_path: Path) -> None:
    """At RE2's default of 8 MiB, FILL_THIS_FORM_SHORT2 and two other large patterns ran
    out of DFA states on the corpus and went on in RE2's NFA, several times slower
    (decision 0050). The prefilter's patterns and the rules on RE2 (spamkit.rules.linear)
    are all compiled by re2_latin1, with RE2_MAX_MEM."""
    re2 = pytest.importorskip("re2")
    assert multiscan.RE2_MAX_MEM > re2.Options().max_mem
    assert multiscan.re2_latin1("a+b").options.max_mem == multiscan.RE2_MAX_MEM
    require_debian_rules()
    test = load_rules([DEBIAN_RULES], builtin=False, multiscan=False).rules["__FILL_THIS_FORM_SHORT2"]
    scan = MultiScan({"body": {7: test.regex_source}}, superset_for, tmp_path)
    assert [c.options.max_mem for c in scan.by_re2["body"].values()] == [multiscan.RE2_MAX_MEM]
    cached = MultiScan({"body": {7: test.regex_source}}, superset_for, tmp_path)
    assert [c.options.max_mem for c in cached.by_re2["body"].values()] == [multiscan.RE2_MAX_MEM]


def test_a_damaged_cache_file_is_compiled_again(tmp_path: Path) -> None:
    tests = {i: f"/word{i}\\s+other/i" for i in range(5)}
    MultiScan({"body": tests}, superset_for, tmp_path)
    for path in tmp_path.iterdir():
        path.write_bytes(b"0,1\ngarbage")
    scan = MultiScan({"body": tests}, superset_for, tmp_path)
    assert scan.covered["body"] == set(range(5))
    assert scan.candidates("body", "x WORD3   Other y") == {3}


LOOSENED = [r"(?:^|\s)(?:kiss(?:a|b)c|s(?:é|K)x|ab+)\.c", r"x?(?:ab|c)?s\s*k(?:a|bc)(?:x|y)?",
            r"(?:a|b)(?:c(?:é|x)k|1ss)", r"(?:k(?:a|1|@)(?:s|5)(?:s|5)(?:_|\.)c|ab(?:c|x)(?:k|s)a)",
            r"a\s?(?:b|c)\s?(?:1|\.)(?:k|s)?(?:_|@)"]
PIECES = ["kiss", "a", "b", "c", "s", "sé", "K", "x", "ab", ".c", "k", "_", "1ss", "cxk", "cé",
          " ", "\n", "@", ".", "1", "\u212a", "\u017f", "\u2003"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=10).map("".join),
                min_size=1, max_size=3))
def test_every_looser_form_is_a_superset(paragraphs: list[str]) -> None:
    """The forms used when Hyperscan refuses a pattern (runs of its sequence, alternations
    cut short) must let through every text the rule matches, like the whole form."""
    joined = "\n".join(paragraphs)
    for pattern in LOOSENED:
        if not any(compile_perl(f"/{pattern}/").search(p) for p in paragraphs):
            continue
        forms = superset_patterns(pattern)
        assert len(forms) >= 3, pattern
        for form in forms:
            scan = MultiScan({"body": {0: pattern}}, lambda _t, _a, f=form: [f], None)
            assert scan.candidates("body", joined) == {0}, (pattern, form, paragraphs)


def test_rules_compile_command_reports_the_prefilter(tmp_path: Path) -> None:
    """`spamkit rules compile --json` (sa-compile's counterpart) on the built-in rules."""
    result = subprocess.run([sys.executable, "-m", "spamkit", "rules", "compile", "--json",
                             "--config", str(tmp_path / "none.toml")],
                            capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    assert report["available"] and report["used"]
    assert 20 <= report["covered"] <= report["rules"]
    assert {"seconds", "cache"} <= report.keys()


def test_a_rule_on_re2_is_its_own_prefilter(tmp_path: Path) -> None:
    """A rule RE2 runs (decision 0049: a long one) is left out of the prefilter, whose
    looser form of FILL_THIS_FORM_PARTIAL let 974 of the test fold's 1,247 messages
    through at 0.45 s; the rule's own search over them takes 0.04 s. It still hits, and
    `rules compile --json` counts it."""
    pytest.importorskip("re2")
    words = "|".join(f"{word}\\s?(?:name|address|number)" for word in (
        "first", "last", "company", "home", "business", "mailing", "postal", "delivery", "shipping",
        "account", "routing", "passport", "licen[cs]e", "phone", "mobile", "fax", "office", "billing",
        "contact", "beneficiary", "bank", "user", "login"))
    long_rule = f"body LONG_FORM /(?:your\\s)?(?:{words})[\\s:]{{0,4}}_{{3,}}/i\n"
    short_rules = "".join(f"body SHORT_{i} /\\bword{i}\\b/i\n" for i in range(12))
    rules = tmp_path / "form.cf"
    rules.write_text(long_rule + short_rules)
    ruleset = load_rules([rules], builtin=False, cache=False)
    assert ruleset.prepare_multiscan() is not None
    long = ruleset.rules["LONG_FORM"]
    assert long.re2_form and long.scan_id is None
    assert all(ruleset.rules[f"SHORT_{i}"].scan_id is not None for i in range(12))
    for body, hits in (("Your bank account number: _____\n", {"LONG_FORM"}),
                       ("word3 and the bank account number\n", {"SHORT_3"})):
        raw = f"From: a@example.com\nSubject: s\n\n{body}".encode()
        counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
        assert set(counts) == hits, body
    result = subprocess.run([sys.executable, "-m", "spamkit", "rules", "compile", "--json", "--config",
                             str(tmp_path / "none.toml"), "--rules", str(rules)],
                            capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout)["rules_on_re2"] == 1


def test_a_failing_scan_lets_every_rule_through() -> None:
    """A scan that fails proves nothing: all its rules run (here the scan is made to fail)."""
    scan = MultiScan({"body": {0: "/cheap/", 1: "/pills/"}}, superset_for, None)
    assert scan.candidates("body", "cheap") == {0}

    class FailingDatabase:
        def scan(self, *_args: object, **_kwargs: object) -> None:
            raise hyperscan.error("scan failed")

    failing = FailingDatabase()
    scan._databases["body"] = [failing]
    scan._local.__dict__.setdefault("scratches", {})[id(failing)] = object()
    assert scan.candidates("body", "nothing") == {0, 1}


def test_a_prefilter_that_cannot_be_built_leaves_the_rules_running(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise hyperscan.error("no database today")

    monkeypatch.setattr(rules_package, "MultiScan", refuse)
    ruleset = load_rules([], builtin=True)
    raw = b"Subject: hello\n\n<html><body>click here</body></html>\n"
    hits = ruleset.match_counts(MessageContext(raw, parse_message(raw)), None)
    assert ruleset.prepare_multiscan(tmp_path) is None and not ruleset.use_multiscan
    assert hits == load_rules([], builtin=True, multiscan=False).match_counts(
        MessageContext(raw, parse_message(raw)), None)
