"""From what the .cf files said (ParsedRules) to rules that run (RuleSet).

ReplaceTags templates are expanded, regexes compiled and tried on adversarial input
within a time budget, header tests and meta expressions parsed, evals looked up.
Every rule that cannot run is skipped with its file, line and reason.
"""

from __future__ import annotations

import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import regex

from spamkit.rules.cf import Definition, ParsedRules
from spamkit.rules.evals import EVALS, RECORDED_RESULT_EVALS, supported
from spamkit.rules.linear import available as linear_available
from spamkit.rules.linear import re2_form
from spamkit.rules.model import BoundedRule, Kind, LoadReport, Rule
from spamkit.rules.perl_regex import (
    PerlRegexError,
    as_byte_rule,
    compile_perl,
    is_paragraph_local,
    literals_for,
)
from spamkit.rules.prefilter import parse_pattern
from spamkit.rules.rulecache import RuleCache

# Inputs that make a backtracking regex explode; each rule must answer on each of them
# within PROBE_BUDGET seconds, or run on RE2 (decision 0043), or it is rejected at load.
# The link made of links found __PDS_DOUBLE_URL (`https?://\S+[?=]https?://\S+\w+$`),
# 3.6 s on the links of one 10 kB message, 0.25 s a link.
ADVERSARIAL_PROBES = (
    "a" * 4000 + "!", " " * 4000 + "x", "=" * 4000, "ab" * 2000 + "\n", "0" * 4000 + "z",
    "<" * 2000 + "x", "a " * 2000 + "!", "x@" * 2000, ("A" * 60 + " ") * 60, "http://a?" * 450,
)
PROBE_BUDGET = 0.1  # seconds per probe
_TOO_SLOW = {"error": f"takes more than {PROBE_BUDGET}s on adversarial input; rejected", "reason": "too slow"}
# A header rule too slow on the probes that RE2 cannot run (a backreference: Debian's
# __PDS_TONAME_EQ_TOLOCAL, /^\s*['"]?([^'"]+)['"]? <?\1\@/ on To:raw, 13.9 s on 4,000
# spaces) reads only this many characters of its header, if it is fast enough there,
# rather than never running; one header's value, where SpamAssassin's matches sit at its
# start (decision 0057). A rule on ALL, the whole header block, is not cut.
BOUNDED_HEADER_LENGTH = 256
# A byte rule's regex at least this long ('/.../flags' as expanded) runs on RE2 whenever
# RE2 can run it with the same meaning: on such patterns RE2 answers 5-100 times faster
# than the backtracking engine (SpamAssassin's FILL_THIS_FORM family), and on shorter ones
# it can be slower (decision 0049).
RE2_PREFERRED_LENGTH = 300
MATCH_BUDGET = 0.25  # seconds a regex search may take at scan time (past it, no match)

_HEADER_TEST = re.compile(r"^(?P<header>[\w.:-]+?)(?::(?P<modifier>raw|addr|name))?\s*"
                          r"(?P<op>=~|!~)\s*(?P<regex>.+?)(?:\s*\[if-unset:\s*(?P<unset>.*)\])?$")
_EVAL = re.compile(r"^eval:(?P<name>\w+)\((?P<args>.*)\)\s*$")
_META_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<number>\d+(?:\.\d+)?)"
                         r"|(?P<op>&&|\|\||==|!=|>=|<=|[-+*/<>()!?:]))")


def build_rules(parsed: ParsedRules, probe: bool = True,
                vetted_prefixes: tuple[str, ...] = (), cache_dir: Path | None = None,
                text_prefixes: tuple[str, ...] = ()) -> dict[str, Rule]:
    """Compile every definition; the report in `parsed` says what was skipped and why.

    Definitions whose file starts with one of `vetted_prefixes` are not probed. Those
    from `text_prefixes` (the built-in rules) match text as characters; every other
    regex matches it as SpamAssassin's bytes (perl_regex.as_byte_rule). With a
    `cache_dir`, regex verdicts are kept there and read back (spamkit.rules.rulecache).
    """
    report = parsed.report
    rules: dict[str, Rule] = {}
    texts: dict[str, tuple[str, bool]] = {}
    for name, definition in parsed.definitions.items():
        text = definition.text
        if name in parsed.replace_rules:
            text = expand_replace_tags(text, parsed)
        texts[name] = (text, probe and not definition.origin.startswith(vetted_prefixes))
    cache = RuleCache(cache_dir, [RuleCache.key(parsed.definitions[name].kind.value, probed, text)
                                  for name, (text, probed) in texts.items()])
    for name, definition in parsed.definitions.items():
        text, probed = texts[name]
        as_bytes = not definition.origin.startswith(text_prefixes)
        rule = _compile_one(definition, text, report, probed, cache, as_bytes)
        if rule is None:
            continue
        rule.description = parsed.descriptions.get(name, "")
        rule.tflags = parsed.tflags.get(name, frozenset())
        rule.scores = parsed.scores.get(name)
        rule.network_result = "net" in rule.tflags and rule.eval_name in RECORDED_RESULT_EVALS
        if "net" in rule.tflags and rule.kind is not Kind.META \
                and rule.eval_name not in RECORDED_RESULT_EVALS:
            # a network test cannot run here; a meta rule flagged `net` only combines
            # other rules' results and runs, as in SpamAssassin's local mode (-L), where
            # SPOOFED_FREEMAIL hits 163 test-fold messages. The SPF, DKIM, DMARC and Pyzor
            # evals run: the SMTP filter made the lookups and wrote their results into the
            # message.
            report.skip("network test", name, rule.origin, rule.eval_name or "")
            continue
        rules[name] = rule
    cache.save()
    parse_pattern.cache_clear()  # the parse trees were for loading only: free them
    _order_metas(rules, report)
    report.loaded = len(rules)
    return rules


def _compile_one(definition: Definition, text: str, report: LoadReport, probe: bool,
                 cache: RuleCache, as_bytes: bool) -> Rule | None:
    rule = Rule(definition.name, definition.kind, definition.origin, source=text)
    try:
        if definition.kind is Kind.META:
            rule.meta_python, rule.meta_dependencies = compile_meta(text)
            return rule
        evaluation = _EVAL.match(text)
        if evaluation:
            args = tuple(_eval_args(evaluation.group("args")))
            if not supported(evaluation.group("name"), args):
                report.skip("eval not implemented", definition.name, definition.origin,
                            evaluation.group("name"))
                return None
            if getattr(EVALS[evaluation.group("name")], "reads_rule_kind", False):
                # (it measures the text its rule reads, which only body and rawbody rules have)
                if definition.kind not in (Kind.BODY, Kind.RAWBODY):
                    report.skip("eval not implemented", definition.name, definition.origin,
                                f"{evaluation.group('name')} in a {definition.kind.value} rule")
                    return None
                args = (definition.kind.value, *args)
            rule.eval_name = evaluation.group("name")
            rule.eval_args = args
            return rule
        if definition.kind in (Kind.HEADER, Kind.MIMEHEADER):
            if text.startswith("exists:"):
                rule.header, rule.exists = text[len("exists:"):].strip(), True
                return rule
            match = _HEADER_TEST.match(text)
            if match is None:
                raise PerlRegexError(f"cannot read header test {text[:60]!r}")
            rule.header = match.group("header")
            rule.modifier = match.group("modifier") or ""
            rule.negate = match.group("op") == "!~"
            rule.if_unset = match.group("unset")
            text = match.group("regex")
        if as_bytes:
            text, rule.reads_bytes = as_byte_rule(text), True
    except (PerlRegexError, ValueError, SyntaxError) as error:
        report.errors.append(f"{definition.origin}: {definition.name}: {error}")
        report.skip("does not compile", definition.name, definition.origin)
        return None
    key = RuleCache.key(definition.kind.value, probe, text)
    verdict = cache.get(key)
    if verdict is None:
        verdict, rule.compiled = _judge_regex(definition.kind, text, probe)
        cache.put(key, verdict)
    if verdict.get("bounded") and rule.header.upper().startswith("ALL"):
        verdict = _TOO_SLOW  # (the header block: its first characters are not what the rule reads)
    if verdict.get("error"):
        report.errors.append(f"{definition.origin}: {definition.name}: {verdict['error']}")
        report.skip(verdict.get("reason", "does not compile"), definition.name, definition.origin)
        return None
    rule.regex_source = text
    if verdict.get("bounded"):
        rule.bounded = int(verdict["bounded"])
        report.bounded_rules.append(BoundedRule(definition.name, definition.origin, rule.bounded))
    if verdict.get("re2"):
        rule.re2_form, rule.compiled = str(verdict["re2"]), None  # (compiled for RE2 on first use)
    if definition.kind not in (Kind.HEADER, Kind.MIMEHEADER):
        literals = verdict.get("literals")
        rule.literals = tuple(literals) if literals is not None else None
        rule.literals_ignorecase = bool(verdict.get("ignorecase"))
        rule.paragraph_local = bool(verdict.get("paragraph_local"))
    return rule


def _judge_regex(kind: Kind, text: str, probe: bool) -> tuple[dict[str, Any], regex.Pattern[str] | None]:
    """Compile a rule's '/regex/flags', try it on adversarial input, find its shortcuts.

    Returns what the rule cache keeps (an error and its reason, or the shortcuts), and
    the compiled pattern when it compiled.
    """
    try:
        pattern = compile_perl(text)
    except (PerlRegexError, ValueError, SyntaxError) as error:
        return {"error": str(error), "reason": "does not compile"}, None
    verdict: dict[str, Any] = {}
    form = re2_form(text) if len(text) >= RE2_PREFERRED_LENGTH and linear_available() else None
    if form is not None:
        verdict["re2"] = form  # (linear time: the probes have nothing to find)
    elif probe and too_slow(pattern):
        # before rejecting it: RE2 runs it in linear time if it can, meaning the same
        form = re2_form(text) if linear_available() else None
        if form is not None:
            verdict["re2"] = form
        elif kind in (Kind.HEADER, Kind.MIMEHEADER) and not too_slow(pattern, BOUNDED_HEADER_LENGTH):
            verdict["bounded"] = BOUNDED_HEADER_LENGTH
        else:
            return _TOO_SLOW, None
    if kind in (Kind.HEADER, Kind.MIMEHEADER):
        return verdict, pattern
    literals = literals_for(text)
    return {**verdict, "literals": list(literals) if literals is not None else None,
            "ignorecase": bool(pattern.flags & regex.IGNORECASE),
            "paragraph_local": kind is not Kind.FULL and is_paragraph_local(text)}, pattern


def too_slow(pattern: regex.Pattern[str], length: int | None = None) -> bool:
    """Whether a search takes more than PROBE_BUDGET on a probe (its first `length`
    characters, with a length)."""
    for probe in ADVERSARIAL_PROBES:
        try:
            pattern.search(probe[:length], timeout=PROBE_BUDGET)
        except TimeoutError:
            return True
    return False


# one eval argument as Conf::Parser's pack_eval_args reads it: quoted (commas inside
# allowed: html_text_match's '<!(?!-).{0,6}>'), or bare letters, digits, ".", ":" and "-"
_EVAL_ARGUMENT = re.compile(r"""\s*(?:(['"])(.*?)\1|([\d.:A-Za-z-]+?))\s*(?:,\s*|$)""")


def _eval_args(text: str) -> list[str]:
    if text.strip() == "":
        return []
    arguments, position = [], 0
    while position < len(text) and (match := _EVAL_ARGUMENT.match(text, position)) and match.end() > position:
        arguments.append(match.group(2) if match.group(1) else match.group(3))
        position = match.end()
    if position < len(text):
        raise ValueError(f"cannot read eval arguments at {text[position:position + 30]!r}")
    return arguments


def compile_meta(expression: str) -> tuple[str, tuple[str, ...]]:
    """A meta expression as a Python expression over `h` (rule name -> hit count), checked
    to compile, and the names it reads."""
    code_text, names = _meta_to_python(expression)
    try:
        compile(code_text, "<meta>", "eval")
    except SyntaxError as error:
        raise ValueError(f"bad meta expression: {error.msg}") from None
    return code_text, names


def _meta_to_python(expression: str) -> tuple[str, tuple[str, ...]]:
    python: list[str] = []
    names: list[str] = []
    position = 0
    end = len(expression.rstrip())  # (testing what is left at each token was quadratic)
    while position < end:
        match = _META_TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise ValueError(f"cannot read meta expression at {expression[position:position + 20]!r}")
        position = match.end()
        if match.group("name"):
            names.append(match.group("name"))
            python.append(f"h.get({match.group('name')!r}, 0)")
        elif match.group("number"):
            python.append(match.group("number"))
        else:
            op = match.group("op")
            python.append({"&&": " and ", "||": " or ", "!": " not "}.get(op, op))
    code_text = "".join(python).strip()
    if "?" in code_text or ":" in code_text:
        raise ValueError("the ?: operator in meta rules is not supported")
    return code_text or "0", tuple(dict.fromkeys(names))


def _order_metas(rules: dict[str, Rule], report: LoadReport) -> None:
    """Reorder `rules` so that every meta comes after the metas it depends on."""
    metas = {name: rule for name, rule in rules.items() if rule.kind is Kind.META}
    graph = {name: [d for d in rule.meta_dependencies if d in metas] for name, rule in metas.items()}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        cycle = " -> ".join(error.args[1])
        for name in set(error.args[1]):
            report.errors.append(f"{metas[name].origin}: {name}: meta rules depend on each other ({cycle})")
            report.skip("meta cycle", name, metas[name].origin)
            del metas[name]
        order = [n for n in TopologicalSorter({n: [d for d in g if d in metas]
                                               for n, g in graph.items() if n in metas}).static_order()]
    others = {name: rule for name, rule in rules.items() if rule.kind is not Kind.META}
    rules.clear()
    rules.update(others)
    rules.update((name, metas[name]) for name in order if name in metas)


_TAG_REFERENCE = re.compile(r"<(?:(?P<kind>pre|post|inter)\s+)?(?P<name>[^<>\s]+)>")


# passes after the first, for tags whose regexes hold tags (<FF_ALL> is <FF_A1>|<FF_A2>...),
# as many as SpamAssassin's ReplaceTags makes
MORE_TAG_PASSES = 5


def expand_replace_tags(text: str, parsed: ParsedRules) -> str:
    """The ReplaceTags plugin: <A> becomes replace_tag A's regex, with the <pre X>,
    <post X> and <inter X> patterns in force placed before, after and between tags; then
    tags inside what was put in are replaced too, pass by pass, up to MORE_TAG_PASSES
    more times (each pass reads its own modifiers, as SpamAssassin's does). The tags keep
    their UTF-8 byte-sequence branches (look-alike letters): the rules that use them,
    from SpamAssassin's files, match bytes (decision 0041)."""
    tags = parsed.replace_tags
    start, end = parsed.replace_delimiters
    if (start, end) != ("<", ">"):
        text = text.replace(start, "<").replace(end, ">")
    text, nested = _expand_tags_once(text, tags)
    for _ in range(MORE_TAG_PASSES):
        if not nested:
            break
        text, nested = _expand_tags_once(text, tags)
    return text


def _expand_tags_once(text: str, tags: dict[str, dict[str, str]]) -> tuple[str, bool]:
    """One pass, with the pre, post and inter it names; and whether what it put in holds
    tags."""
    nested = False
    current = {"pre": "", "post": "", "inter": ""}
    out: list[str] = []
    position = 0
    previous_was_tag = False
    for match in _TAG_REFERENCE.finditer(text):
        literal = text[position:match.start()]
        if literal:
            out.append(literal)
            previous_was_tag = False
        position = match.end()
        kind, name = match.group("kind"), match.group("name")
        if kind:
            current[kind] = tags[kind].get(name, "")
            continue
        if name not in tags["tag"]:
            out.append(match.group(0))
            previous_was_tag = False
            continue
        if previous_was_tag:
            out.append(current["inter"])
        out.append(current["pre"] + tags["tag"][name] + current["post"])
        nested = nested or _TAG_REFERENCE.search(tags["tag"][name]) is not None
        previous_was_tag = True
    out.append(text[position:])
    return "".join(out), nested
