"""After Scanner.warm_up, scanning imports nothing.

A daemon gives up root once warmed up, and on these machines Python lives under /root,
which its user cannot read: a module first imported after that fails, and every
message that needs it is answered with an error. spamkit imports some modules on first
use to keep each `check` and `deliver` quick to start (docs/decisions/0044), so warm_up
must load them all. Here a fresh interpreter warms a scanner up, then refuses every
import, and scans, autolearns and reloads its configuration (a misspelt option among
them) as a daemon would.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from corpora import CorpusMessage

SCRIPT = r"""
import importlib.abc
import sys
from pathlib import Path

from spamkit.config import load_config
from spamkit.store import open_store
from spamkit.verdict import Scanner, reload_scanner

config_path, db_path, messages = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
store = open_store(db_path)
scanner = Scanner.from_config(load_config(config_path), store)
scanner.rules.prepare_multiscan()
scanner.warm_up()


class RefuseImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        raise ImportError(f"{name} imported after warm_up")


sys.meta_path.insert(0, RefuseImports())
outcomes = []
for path in sorted(messages.iterdir()):
    raw = path.read_bytes()
    verdict = scanner.scan(raw, envelope_from="a@example.org", recipients=("b@example.org",))
    verdict.headers()
    outcomes.append(scanner.autolearn(raw, verdict, path.name))
config_path.write_text(config_path.read_text() + "TagLevle = 3\n")
kept, errors = reload_scanner(scanner, str(config_path), store)
assert kept is scanner and "did you mean TagLevel?" in errors[0], errors
config_path.write_text(config_path.read_text().replace("TagLevle = 3\n", "TagLevel = 3\n"))
reloaded, errors = reload_scanner(scanner, str(config_path), store)
# (no error but those it started with: Debian's files have a rule spamkit rejects)
assert reloaded is not scanner and set(errors) <= set(scanner.rules.report.errors), errors
print(len(outcomes), outcomes.count("learned"))
"""


def _with_attachment(content_type: str, name: str, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: files\r\n"
            b"Date: Mon, 2 Sep 2002 09:59:00 +0000\r\nMessage-ID: <" + name.encode() + b"@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nthe files you asked for\r\n"
            b"--b\r\nContent-Type: " + content_type.encode() + b'; name="' + name.encode() + b'"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n")


def _archives() -> dict[str, bytes]:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("invoice/invoice.js", b"x")
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w") as archive:
        member = tarfile.TarInfo("photos/a.jpg")
        member.size = 2
        archive.addfile(member, io.BytesIO(b"\xff\xd8"))
    koi8 = ("Subject: " + "привет").encode("koi8-r")
    return {
        "zip.eml": _with_attachment("application/zip", "invoice.zip", zipped.getvalue()),
        "tar.eml": _with_attachment("application/x-tar", "photos.tar", tarred.getvalue()),
        "koi8.eml": (b"Date: Mon, 2 Sep 2002 09:59:00 +0000\r\nFrom: a@example.org\r\n" + koi8 +
                     b"\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n" +
                     "скидки".encode("koi8-r") + b"\r\n"),
        "uuencoded.eml": (b"From: a@example.org\r\nSubject: file\r\n\r\nbegin 644 a.exe\r\n"
                          b"#86)C\r\n`\r\nend\r\n"),
    }


@pytest.mark.parametrize("config_text", [
    "BayesAutoLearn = true\nBayesAutoLearnThresholdNonspam = 5.0\n",
    'UseBayes = false\nUseBuiltinRules = false\nRulePaths = ["/usr/share/spamassassin"]\n',
    # no rules: the rule engine is imported by warm_up, not by the scanner (decision 0056)
    "UseBuiltinRules = false\nBayesAutoLearn = true\n",
], ids=["built-in rules, Bayes, autolearn", "Debian's rules", "Bayes alone, autolearn"])
def test_nothing_is_imported_after_warm_up(tmp_path: Path, config_text: str,
                                           split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    _, test = split
    messages = tmp_path / "messages"
    messages.mkdir()
    chosen = [m for m in test if m.label == "spam"][:60] + [m for m in test if m.label == "ham"][:60]
    for number, message in enumerate(chosen):
        (messages / f"{number:03d}.eml").write_bytes(message.data)
    for name, data in _archives().items():
        (messages / name).write_bytes(data)
    config = tmp_path / "spamkit.toml"
    config.write_text(config_text)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(config), str(tmp_path / "db"), str(messages)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scanned, learned = map(int, done.stdout.split())
    assert scanned == len(chosen) + 4
    if "BayesAutoLearn = true" in config_text:
        assert learned > 0  # autolearning ran, and imported nothing
