"""Rules too slow for the backtracking engine run on RE2 when it means the same
(spamkit.rules.linear): the translation is held against `regex` on generated patterns
and texts, and on Debian's rules over corpus text."""

from __future__ import annotations

from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules, view_of
from spamkit.rules.compile import ADVERSARIAL_PROBES, RE2_PREFERRED_LENGTH
from spamkit.rules.linear import LinearPattern, available, re2_form
from spamkit.rules.model import Kind
from spamkit.rules.perl_regex import as_byte_rule, compile_perl
from tests.scoring.test_spamassassin_rules import DEBIAN_RULES, require_debian_rules

pytestmark = pytest.mark.skipif(not available(), reason="google-re2 is installed with spamkit on x86-64 only")


def _engines(rule_text: str) -> tuple[regex.Pattern[str], LinearPattern]:
    """The rule compiled for the backtracking engine and for the linear one."""
    form = re2_form(rule_text)
    assert form is not None, rule_text
    return compile_perl(rule_text), LinearPattern(form)


def _same(rule_text: str, text: str,
          engines: tuple[regex.Pattern[str], LinearPattern] | None = None) -> None:
    """The backtracking and the linear engine find the same match, with the same text,
    and the same matches one after another as Perl's /g finds them (what a rule with
    `multiple` counts). `engines`: `_engines(rule_text)`, made once for many texts."""
    perl, linear = engines or _engines(rule_text)
    try:
        expected = perl.search(text, timeout=1)
        expected_all = [m.group(0) for m in perl.finditer(text, timeout=1)]
    except TimeoutError:
        return
    found = linear.search(text)
    assert (expected is None) == (found is None), (rule_text, text)
    if expected is not None and found is not None:
        assert found.group(0) == expected.group(0), (rule_text, text)
    assert [m.group(0) for m in linear.finditer(text)] == expected_all, (rule_text, text)


def test_what_is_translated_and_what_is_not() -> None:
    for text in (r"/\@\S*[bcdfgjklmnpqrstvwxz]{7}/i", r"/^From:.{0,9}$/m", r"/a.b/s", r"/(?i:ab)c|x+?y/",
                 r"/[^\w\s]{2,5}\b/i", r"/caf\xc3\xa9/i", r"/\d{1000}/", r"/(?:a{1,300}b){5}/"):
        assert re2_form(as_byte_rule(text)) is not None, text
    # backreferences, lookarounds, possessive and atomic groups, counts past RE2's
    # limit, characters beyond a byte, and character (built-in) rules are not
    for text in (r"/(a)\1/", r"/(?=x)y/", r"/(?<!x)y/", r"/a++/", r"/(?>ab)/", r"/a{1001}/",
                 r"/(?:a{40}){40}/", "/\\x{263a}/"):
        assert re2_form(as_byte_rule(text)) is None, text
    # nor a repeated group, or a whole pattern, that can match nothing: the engines end
    # such a match, or step past it, differently ("AA" against "AA0"; 1 match against 2)
    for text, subject in ((r"/Aa*(?:A*|[^a]|a)*/", "AA0"), (r"/[^\w\s]?\z/m", "\xffb")):
        assert re2_form(as_byte_rule(text)) is None, text
        assert compile_perl(as_byte_rule(text)).search(subject) is not None
    assert re2_form(r"/abc/i") is None  # (no "a" flag: a rule read as characters)
    # Perl's $ is no character: RE2, with no lookahead, takes the final newline, so a $
    # with more of the pattern after it is not translated ("$\n" matches "\n" in Perl),
    # and where it ends the pattern, the match ends before that newline, and the next
    # match is looked for from there (" " and then "\n" in "a \n")
    for text, subject in ((r"/\B$\n\B/", "\n"), (r"/\n$\B/", "\n\n"), (r"/(?:x$|y)+/", "yx")):
        assert re2_form(as_byte_rule(text)) is None, text
        assert compile_perl(as_byte_rule(text)).search(subject) is not None
    for text, subject in ((r"/\s$/", "a \n"), (r"/x$/", "x\n"), (r"/(?:a$|b)/", "ba\n"), (r"/a(?:x$)?/", "ax\n"),
                          (r"/\s$/m", "a \nb\n")):
        assert re2_form(as_byte_rule(text)) is not None, text
        _same(as_byte_rule(text), subject)
    assert [m.group(0) for m in LinearPattern(str(re2_form(as_byte_rule(r"/\s$/")))).finditer("a \n")] == [" ", "\n"]
    # a fixed count over counts past RE2's nesting limit is written out, and means the same
    for text in ("ab" * 5, "a" * 300 + "b" + "ab" * 4, "ab" * 4 + "a" * 301 + "b", "ab" * 4 + "\n" + "ab"):
        _same(as_byte_rule(r"/(?:a{1,300}b){5}/"), text)


def test_a_rule_too_slow_for_regex_runs_on_re2(tmp_path: Path) -> None:
    """FROM_DOMAIN_NOVOWEL's pattern is quadratic for a backtracking engine on
    "x@x@x@..." and was rejected at load; RE2 answers 100 kB of each probe at once, with
    the same hits. A backreference rule, which RE2 cannot run, stays rejected (but on a
    header, which reads its start: tests/scoring/test_rules.py)."""
    rules = tmp_path / "slow.cf"
    rules.write_text("header NOVOWEL From =~ /\\@\\S*[bcdfgjklmnpqrstvwxz]{7}/i\n"
                     "body TONAME_EQ_TOLOCAL /^\\s*['\"]?([^'\"]+)['\"]? <?\\1\\@/\n")
    ruleset = load_rules([rules], builtin=False, cache=False)
    assert "NOVOWEL" in ruleset.rules and "TONAME_EQ_TOLOCAL" not in ruleset.rules
    assert ruleset.report.skipped == {"too slow": 1}
    rule = ruleset.rules["NOVOWEL"]
    assert rule.re2_form and isinstance(rule.pattern, LinearPattern)
    assert ruleset.prepare_linear() == 1
    for probe in ADVERSARIAL_PROBES:  # none has an "@" and seven consonants after it
        assert rule.pattern.search(probe * 25) is None
    for sender, hits in (("a@bcdfgjklmn.example", True), ("a@example.com", False), ("x@strngkdz.de", True), ("x@schwrtzng.de", False)):
        raw = f"From: {sender}\nTo: b@example.org\nSubject: s\n\nbody\n".encode()
        counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
        assert ("NOVOWEL" in counts) == hits, sender


def test_a_link_rule_quadratic_on_a_link_of_links_runs_on_re2(tmp_path: Path) -> None:
    """__PDS_DOUBLE_URL (Debian's 72_active.cf) took up to 0.25 s a link for the
    backtracking engine on a link made of links, 3.6 s on one 10 kB message that random
    changes to a corpus message made (`spamassassin -L`: 0.94 s, its start included). The probe of such a link
    finds it at load, and RE2 runs it, with the same hits."""
    rules = tmp_path / "double.cf"
    rules.write_text("uri DOUBLE_URL m;https?://[\\S]+(?:\\?|=)https?://[\\S]+[\\w]+$;\n")
    ruleset = load_rules([rules], builtin=False, cache=False)
    rule = ruleset.rules["DOUBLE_URL"]
    assert rule.re2_form and isinstance(rule.pattern, LinearPattern)
    assert rule.pattern.search(ADVERSARIAL_PROBES[-1] * 25) is None
    for link, hits in (("http://a.example.com/r?u=http://b.example.com/x", True),
                       ("http://a.example.com/r?u=http://b.example.com/", False),
                       ("http://a.example.com/x", False)):
        raw = f"From: a@example.com\nTo: b@example.org\nSubject: s\nContent-Type: text/html\n\n<a href=\"{link}\">x</a>\n".encode()
        counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
        assert ("DOUBLE_URL" in counts) == hits, link
        _same(rule.source + "a", link)


def test_a_long_rule_runs_on_re2_when_it_can(tmp_path: Path) -> None:
    """A byte rule's regex of RE2_PREFERRED_LENGTH characters or more runs on RE2 when
    RE2 means the same, though no probe finds it slow: SpamAssassin's FILL_THIS_FORM
    rules spent 1.1-1.4 s of the test fold in `regex` and 0.12-0.14 s in RE2 (decision
    0049). A shorter rule, and a long one RE2 cannot run (a backreference), stay on
    `regex`; each finds the hits `regex` finds."""
    fields = "|".join(["first name", "last name", "company name", "name", "home address", "address", "city",
                       "zip code", "postal code", "state", "country", "nationality", "marital status", "phone",
                       "mobile number", "fax number", "occupation", "age", "sex", "religion", "bank name",
                       "account number", "passport number", "date of birth", "login name", "password"])
    form = rf"/(?:(?:your\s)?(?:full\s|complete\s)?(?:{fields})(?:\s?\([^)]{{1,30}}\))?[\s:]{{0,4}}[_.]{{3,100}}\s*){{3}}/i"
    long_backreference = form[:-3] + r"(\w)\1/i"
    assert len(form) >= RE2_PREFERRED_LENGTH and len(long_backreference) >= RE2_PREFERRED_LENGTH
    rules = tmp_path / "form.cf"
    rules.write_text(f"body FORM {form}\nbody FORM_BACKREF {long_backreference}\nbody SHORT /your\\sname[\\s:]*_{{3,}}/i\n")
    ruleset = load_rules([rules], builtin=False, cache=False)
    assert isinstance(ruleset.rules["FORM"].pattern, LinearPattern)
    for name in ("FORM_BACKREF", "SHORT"):
        assert isinstance(ruleset.rules[name].pattern, regex.Pattern), name
    assert ruleset.prepare_linear() == 1
    filled = "Your full name: ________\nAddress: ________\nYour Phone (mobile) ______\nOccupation: ....\n"
    for body, form_hits, short_hits in ((filled, True, False), (filled.replace("Address", "Street"), False, False),
                                        ("Your name: ___\n" * 40, True, True), ("name address phone, no blanks\n", False, False)):
        raw = f"From: a@example.com\nTo: b@example.org\nSubject: s\n\n{body}".encode()
        counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)), 0)
        assert ("FORM" in counts, "SHORT" in counts, "FORM_BACKREF" in counts) == (form_hits, short_hits, False), body
        _same(ruleset.rules["FORM"].regex_source, body)


_ATOMS = ["a", "A", "b", "\\n", " ", "@", "\\xc3\\xa9", "[a-c]", "[^a]", "[^\\w\\s]", "\\w", "\\W", "\\s", "\\S",
          "\\d", ".", "\\b", "\\B", "^", "$", "\\A", "\\z"]


@st.composite
def _patterns(draw: st.DrawFn) -> str:
    def piece(depth: int) -> str:
        choice = draw(st.integers(0, 5 if depth < 2 else 2))
        if choice <= 2:
            atom = draw(st.sampled_from(_ATOMS))
        elif choice == 3:
            atom = "(?:" + "|".join(piece(depth + 1) for _ in range(draw(st.integers(1, 3)))) + ")"
        elif choice == 4:
            atom = "(" + "".join(piece(depth + 1) for _ in range(draw(st.integers(1, 3)))) + ")"
        else:
            atom = "(?i:" + piece(depth + 1) + ")"
        if atom in ("^", "$", "\\A", "\\z", "\\b", "\\B"):
            return atom
        quantifier = draw(st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "{0,2}"]))
        return atom + quantifier + (draw(st.sampled_from(["", "?"])) if quantifier else "")
    body = "".join(piece(0) for _ in range(draw(st.integers(1, 4))))
    return "/" + body + "/" + draw(st.sampled_from(["", "i", "s", "m", "im", "sm"])) + "a"


@settings(max_examples=400, deadline=None)
@given(_patterns(), st.text(alphabet="aAbB \n\t@x\u00c3\u00a9\u00ff0_", max_size=30))
def test_generated_patterns_match_alike(pattern: str, text: str) -> None:
    if re2_form(pattern) is not None:
        _same(pattern, text)


def test_debian_rules_match_alike_on_corpus_text(all_messages: list[CorpusMessage]) -> None:
    """Each of Debian's byte rules RE2 can run, on the texts its kind reads, from 25
    corpus messages: the same hits as `regex` (the texts it takes too long on skipped)."""
    require_debian_rules()
    ruleset = load_rules([DEBIAN_RULES], builtin=False, multiscan=False)
    texts: dict[str, list[str]] = {}
    for message in all_messages[3::240]:
        context = MessageContext(message.data, parse_message(message.data))
        context.registry, context.redirectors = ruleset.registry, ruleset.redirectors
        for view in ("body:bytes", "rawbody:bytes", "uri:bytes", "full"):
            texts.setdefault(view, []).extend(context.texts(view)[:40])
        for name in ("From", "Subject", "To", "Received", "ALL", "Message-ID", "Content-Type"):
            text = context.header_text(name, "", True)
            if text:
                texts.setdefault("header", []).append(text)
    translated = 0
    for rule in ruleset.rules.values():
        if not (rule.regex_source and rule.reads_bytes) or re2_form(rule.regex_source) is None:
            continue
        translated += 1
        view = "header" if rule.kind in (Kind.HEADER, Kind.MIMEHEADER) else view_of(rule)
        engines = _engines(rule.regex_source)  # (translating it for each text took most of the time)
        for text in texts[view][:60]:
            _same(rule.regex_source, text, engines)
    assert translated > 1000
    assert isinstance(compile_perl(r"/x/a"), regex.Pattern)
