"""`spamkit lint` names the typos in an administrator's rule file that used to pass in
silence: a misspelt directive (only counted among "unknown directives", with no line), a
score override for a misspelt rule name, a meta reading one, a describe or tflags line
naming one (a tflags typo leaves the rule without its flags). Debian's own rule files,
which score rules of plugins spamkit does not have, give none of these warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spamkit.rules import load_rules
from tests.scoring.test_spamassassin_rules import DEBIAN_RULES, require_debian_rules

LOCAL_CF = """\
header LOCAL_HELLO Subject =~ /hello/
heder LOCAL_BYE Subject =~ /bye/
heder LOCAL_CIAO Subject =~ /ciao/
score LOCAL_HELO 3.5
score BAYES99 5
score NO_SUCH_RULE_ANYWHERE 2
meta LOCAL_BOTH LOCAL_HELO && LOCAL_HELLO
score LOCAL_BOTH 1
ifplugin Mail::SpamAssassin::Plugin::Razor2
full RAZOR2_CHECK eval:check_razor2()
endif
score RAZOR2_CHECK 1.7
meta LOCAL_RAZOR RAZOR2_CHECK && LOCAL_HELLO
describe LOCAL_HELO Says hello
tflags LOCAL_HELO nice
describe LOCAL_HELLO Says hello
describe RAZOR2_CHECK Listed in Razor
tflags NOT_NEAR_ANY_RULE nice
"""


def test_lint_names_each_typo_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "local.cf"
    path.write_text(LOCAL_CF)
    report = load_rules([path], lint=True).report
    assert report.unknown_directives == {"heder": 2}
    assert report.warnings == [
        f"{path}:2: unknown directive 'heder' (2 lines, the first here: spamkit skips them); did you mean header?",
        f"{path}:4: score for LOCAL_HELO, which no rule file defines; did you mean LOCAL_HELLO?",
        f"{path}:5: score for BAYES99, which no rule file defines; did you mean BAYES_99?",
        f"{path}:14: describe for LOCAL_HELO, which no rule file defines; did you mean LOCAL_HELLO?",
        f"{path}:15: tflags for LOCAL_HELO, which no rule file defines; did you mean LOCAL_HELLO?",
        f"{path}:7: meta LOCAL_BOTH reads LOCAL_HELO, which no rule file defines (it counts as not hit); "
        "did you mean LOCAL_HELLO?",
    ]
    # (a check or a filter's start does not pay for looking: 17 ms with Debian's rules)
    assert load_rules([path]).report.warnings == []


def test_lint_prints_them(tmp_path: Path) -> None:
    path = tmp_path / "local.cf"
    path.write_text(LOCAL_CF)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'RulePaths = ["{path}"]\n')
    result = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--config", str(config), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # warnings, not errors
    out = json.loads(result.stdout)
    assert any(w.startswith(f"{path}:5: score for BAYES99") for w in out["warnings"]), out["warnings"]


def test_clear_headers_starts_the_added_headers_afresh(tmp_path: Path) -> None:
    path = tmp_path / "local.cf"
    path.write_text("add_header all Old old\nclear_headers\nadd_header spam Flag _YESNOCAPS_\n")
    ruleset = load_rules([path], builtin=False, lint=True)
    assert ruleset.settings.add_headers == [("spam", "Flag", "_YESNOCAPS_")]
    assert ruleset.report.unknown_directives == {}


def test_debian_rules_give_no_warning() -> None:
    require_debian_rules()
    paths = [DEBIAN_RULES, *([Path("/etc/spamassassin")] if Path("/etc/spamassassin").is_dir() else [])]
    report = load_rules(paths, lint=True).report
    assert report.unknown_directives == {}
    assert report.warnings == []
