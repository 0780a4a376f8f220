"""A configuration that names no rules judges without the rule engine (decision 0056).

With UseBuiltinRules false and no RulePaths, Bayes and the lists judge alone. The
Scanner then does not import spamkit.rules (nor `regex`, which it brings), which was
about 40 ms of each `check` or `deliver` process's start. Its verdicts must be the ones
an empty RuleSet gives, field for field, with and without list entries and autolearn.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.config import config_from_text
from spamkit.learn import Learner
from spamkit.lists import Lists
from spamkit.rules import load_rules
from spamkit.sources import SourceItem
from spamkit.store import Label, open_store
from spamkit.verdict import Scanner, Verdict

IMPORTS = r"""
import json
import sys
from pathlib import Path

from spamkit.config import load_config
from spamkit.store import open_store
from spamkit.verdict import Scanner

config_path, db_path, message = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
scanner = Scanner.from_config(load_config(config_path), open_store(db_path))
verdict = scanner.scan(message.read_bytes(), envelope_from="friend@example.org")
print(json.dumps({"listed": verdict.listed, "decision": verdict.decision,
                  "rules": "spamkit.rules" in sys.modules, "regex": "regex" in sys.modules}))
"""


def _scan_in_a_fresh_interpreter(tmp_path: Path, config_text: str) -> dict[str, object]:
    config = tmp_path / "spamkit.toml"
    config.write_text(config_text)
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: someone@example.com\r\nSubject: hello\r\n\r\nhow are you\r\n")
    done = subprocess.run([sys.executable, "-c", IMPORTS, str(config), str(tmp_path / "db"), str(message)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_with_no_rules_configured_the_rule_engine_is_not_imported(tmp_path: Path) -> None:
    assert _scan_in_a_fresh_interpreter(tmp_path, "UseBuiltinRules = false\n") == {
        "listed": None, "decision": "ham", "rules": False, "regex": False}


def test_a_list_entry_brings_the_engine_in_and_is_applied(tmp_path: Path) -> None:
    (tmp_path / "lists").write_text("white friend@example.org\n")
    assert _scan_in_a_fresh_interpreter(tmp_path, f'UseBuiltinRules = false\nListsFile = "{tmp_path / "lists"}"\n') \
        == {"listed": "white", "decision": "ham", "rules": True, "regex": True}


def test_the_built_in_rules_still_load(tmp_path: Path) -> None:
    assert _scan_in_a_fresh_interpreter(tmp_path, "")["rules"] is True


def _fields(verdict: Verdict) -> dict[str, object]:
    fields = dataclasses.asdict(verdict)
    fields["headers"] = verdict.headers()
    fields["rewritten"] = verdict.rewrite(b"Subject: x\r\n\r\nbody\r\n")
    return fields


def test_verdicts_are_those_of_an_empty_rule_set(tmp_path: Path,
                                                 split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    train, test = split
    store = open_store(tmp_path / "db")
    learner = Learner(store)
    for label in (Label.SPAM, Label.HAM):  # enough of each for Bayes to judge
        chosen = [m for m in train if m.label == label.value][:250]
        learner.learn([SourceItem(m.path, m.data) for m in chosen], label)
    (tmp_path / "lists").write_text("white *@spamassassin.taint.org\nblack *@*.ru\n")
    messages = [m.data for m in test[:60]] + [m.data for m in test if m.label == "spam"][:60]
    for config_text in ("UseBuiltinRules = false\n",
                        "UseBuiltinRules = false\nBayesAutoLearn = true\n",
                        'UseBuiltinRules = false\nSubjectTag = true\nSensitivity = "custom"\nTagLevel = 0\n',
                        f'UseBuiltinRules = false\nListsFile = "{tmp_path / "lists"}"\n'):
        config = config_from_text(config_text, tmp_path / "spamkit.toml", {})
        lists = Lists.load(config.lists_path)
        without = Scanner.from_config(config, store)
        assert without._rules is None
        empty = Scanner(config, load_rules([], builtin=False), lists, store)
        one_by_one = [without.scan(raw, envelope_from="x@example.org") for raw in messages]
        assert [_fields(v) for v in one_by_one] == \
            [_fields(empty.scan(raw, envelope_from="x@example.org")) for raw in messages]
        # (batched, Bayes's sums may differ in the last bits from one by one: compared as such)
        assert [_fields(v) for v in without.scan_many(messages, envelope_from="x@example.org")] == \
            [_fields(v) for v in empty.scan_many(messages, envelope_from="x@example.org")]
        decisions = {verdict.decision for verdict in one_by_one}
        autolearn = {verdict.autolearn for verdict in one_by_one}
        if "BayesAutoLearn" in config_text:
            assert autolearn == {"ham"}  # 0 points: every message at or below the ham threshold
        if "TagLevel = 0" in config_text:
            assert decisions == {"spam"}  # 0 points, at the tag level: tagged as such
        if "ListsFile" in config_text:
            assert {verdict.listed for verdict in one_by_one} >= {"white", None}
    store.close()


_NO_RULES = config_from_text("UseBuiltinRules = false\nBayesAutoLearn = true\n", Path("/nonexistent/spamkit.toml"), {})
_WITHOUT = Scanner.from_config(_NO_RULES, None)
_EMPTY = Scanner(_NO_RULES, load_rules([], builtin=False), Lists())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.lists(st.sampled_from(
    [b"From: a@b.example", b"Subject: x", b"Content-Type: text/html", b"\n", b"\r\n", b"<p>hi",
     b"=?utf-8?q?=E9?=", b"X-Spam-Flag: YES", b"\x00", b"\xff"])).map(b"".join))
def test_any_bytes_get_the_verdict_of_an_empty_rule_set(raw: bytes) -> None:
    assert _fields(_WITHOUT.scan(raw, envelope_from="x@example.org")) == \
        _fields(_EMPTY.scan(raw, envelope_from="x@example.org"))
