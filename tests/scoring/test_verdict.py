"""Verdicts as mail systems see them: SpamAssassin's headers, subject tag, no injection."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.config import config_from_text
from spamkit.lists import Lists, check_entry
from spamkit.rules import load_rules
from spamkit.rules.context import first_address
from spamkit.pyzor import _PYZOR_FIELD
from spamkit.verdict import FOLD_WIDTH, Scanner, folded, with_headers

RAW = (b"From: Pills <x@pills.example>\r\nTo: you@example.org\r\nSubject: cheap pills\r\n"
       b"X-Spam-Status: Yes, score=99 (forged by the sender)\r\nX-Spam-Flag: YES\r\n"
       b"\r\nclick here to order now\r\n")


def scanner(tmp_path: Path, config_text: str, rules_text: str) -> Scanner:
    rules_file = tmp_path / "r.cf"
    rules_file.write_text(rules_text)
    config = config_from_text(config_text, tmp_path / "spamkit.toml", {})
    return Scanner(config, load_rules([rules_file], builtin=False), Lists())


def test_headers_in_spamassassin_format(tmp_path: Path) -> None:
    s = scanner(tmp_path, 'Sensitivity = "custom"\nTagLevel = 4\nSubjectTag = true\n'
                'SubjectTagText = "[SPAM _SCORE_]"\n',
                "body PILLS /order now/\nscore PILLS 7.3\n")
    verdict = s.scan(RAW)
    assert verdict.decision == "spam" and verdict.score == 7.3
    rewritten = verdict.rewrite(RAW)
    parsed = email.message_from_bytes(rewritten, policy=email.policy.compat32)
    assert parsed.get_all("X-Spam-Flag") == ["YES"]
    status = parsed.get_all("X-Spam-Status")
    assert status is not None and status[0].startswith(
        "Yes, score=7.3 required=4.0 tests=PILLS autolearn=no")
    assert parsed["X-Spam-Level"] == "*******"
    assert parsed["Subject"] == "[SPAM 7.3] cheap pills"
    assert b"forged by the sender" not in rewritten  # incoming X-Spam-* headers are dropped
    assert rewritten.endswith(b"\r\n\r\nclick here to order now\r\n")
    assert "PILLS" in verdict.report()


def test_headers_are_folded_as_spamassassin_folds_them_unless_fold_headers_0(tmp_path: Path) -> None:
    """SpamAssassin folds its headers (fold_headers, on by default): a status naming many
    rules runs on over lines of at most 78 columns, broken after a comma or a space, in
    the message's own line ends. Unfolded, 40 rules made a line of 900 characters.
    `fold_headers 0` in a rule file gives one line, as it does in SpamAssassin."""
    names = [f"LOCAL_RULE_NUMBER_{n:02d}" for n in range(40)]
    rules = "".join(f"body {name} /order now/\nscore {name} 0.5\n" for name in names)
    for fold in (True, False):
        s = scanner(tmp_path, "", rules + ("" if fold else "fold_headers 0\n"))
        rewritten = s.scan(RAW).rewrite(RAW)
        head = rewritten.split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b"")  # (CRLF message: CRLF folds)
        lines = head.split(b"\r\n")
        start = next(i for i, line in enumerate(lines) if line.startswith(b"X-Spam-Status: "))
        end = next(i for i in range(start + 1, len(lines)) if lines[i][:1] != b"\t")
        status = lines[start:end]
        parsed = email.message_from_bytes(rewritten, policy=email.policy.compat32)["X-Spam-Status"]
        named = re.search(r"tests=(.*?)\s+autolearn=", parsed, re.DOTALL).group(1)  # type: ignore[union-attr]
        assert re.split(r",\s*", named) == names
        if fold:
            assert len(status) > 10 and all(len(line.expandtabs()) <= FOLD_WIDTH for line in status)
        else:
            assert len(status) == 1 and len(status[0]) > 900


WORD = st.text("ABZ_09=.-", min_size=1, max_size=30)


@settings(max_examples=300)
@given(words=st.lists(st.tuples(WORD, st.sampled_from([" ", ","])), min_size=1, max_size=60),
       name=st.sampled_from(["X-Spam-Status", "X-Spam-Level", "X"]))
def test_folding_breaks_only_after_a_space_or_a_comma_and_loses_nothing(
        words: list[tuple[str, str]], name: str) -> None:
    value = "".join(word + joint for word, joint in words)[:-1]
    lines = folded(name, value).split("\n\t")
    # each break came after a comma (kept at the line's end) or in place of a space
    rebuilt = lines[0]
    for line in lines[1:]:
        rebuilt += ("" if rebuilt.endswith(",") else " ") + line
    assert rebuilt == value
    for number, line in enumerate(lines):
        width = len(line) + (len(name) + 2 if number == 0 else 8)
        assert width <= FOLD_WIDTH or not re.search(r"[ ,].", line)  # (over only for one long piece)


def test_ham_is_marked_no_and_left_alone(tmp_path: Path) -> None:
    s = scanner(tmp_path, 'SubjectTag = true\n', "body NOTHING /never matches here/\n")
    verdict = s.scan(RAW)
    assert verdict.decision == "ham"
    rewritten = verdict.rewrite(RAW)
    parsed = email.message_from_bytes(rewritten, policy=email.policy.compat32)
    assert parsed["X-Spam-Flag"] is None
    assert parsed["X-Spam-Status"].startswith("No, score=")
    assert parsed["Subject"] == "cheap pills"


def test_added_headers_cannot_be_injected(tmp_path: Path) -> None:
    s = scanner(tmp_path, 'Sensitivity = "custom"\nTagLevel = 1\nSubjectTag = true\n'
                'SubjectTagText = "[SPAM]\\r\\nBcc: victim@example.org"\n',
                "body PILLS /order now/\nscore PILLS 5\nadd_header all Report _TESTS_\r\n")
    rewritten = s.scan(RAW).rewrite(RAW)
    parsed = email.message_from_bytes(rewritten, policy=email.policy.compat32)
    assert parsed["Bcc"] is None
    header_block = rewritten.split(b"\r\n\r\n", 1)[0]
    for line in header_block.split(b"\r\n"):
        assert b"\n" not in line and b"\r" not in line


def test_a_crlf_in_the_body_of_an_lf_message_hides_no_forged_header(tmp_path: Path) -> None:
    """spamc from procmail sends LF line ends, and a body may hold CRLFs (a pasted text, an
    attachment): the header block is still found, the sender's X-Spam-* fields go, and
    ours are written with the headers' own LF."""
    s = scanner(tmp_path, 'Sensitivity = "custom"\nTagLevel = 1\nSubjectTag = true\n',
                "body PILLS /order now/\nscore PILLS 5\n")
    raw = (b"From: a@example.net\nX-Spam-Status: No, score=-100\nX-Spam-Flag: NO\nSubject: hi\n\n"
           b"order now\r\nfrom the pasted part\r\n")
    rewritten = s.scan(raw).rewrite(raw)
    head, _, body = rewritten.partition(b"\n\n")
    assert b"\r" not in head and body == b"order now\r\nfrom the pasted part\r\n"
    assert b"score=-100" not in head and b"X-Spam-Flag: NO" not in head
    assert b"X-Spam-Flag: YES" in head and b"\nSubject: ***SPAM*** hi" in head


def test_an_mbox_from_line_stays_first(tmp_path: Path) -> None:
    """procmail gives its filters the message with its mbox "From " line, and spamc passes
    it on to spamd: it stays the first line, as SpamAssassin keeps it. Written after our
    fields, it was a line of the header block that is not a field, and Python's parser
    (as other readers) took the header block to end there."""
    s = scanner(tmp_path, 'Sensitivity = "custom"\nTagLevel = 1\nSubjectTag = true\n',
                "body PILLS /order now/\nscore PILLS 5\n")
    for end in (b"\n", b"\r\n"):
        raw = (b"From a@example.net  Thu Aug 22 14:44:07 2002" + end + b"From: a@example.net" + end
               + b"X-Spam-Flag: NO" + end + b"Subject: hi" + end + end + b"order now" + end)
        rewritten = s.scan(raw).rewrite(raw)
        envelope, rest = rewritten.split(end, 1)
        assert envelope == b"From a@example.net  Thu Aug 22 14:44:07 2002"
        parsed = email.message_from_bytes(rest, policy=email.policy.compat32)
        assert parsed["X-Spam-Flag"] == "YES" and parsed["Subject"] == "***SPAM*** hi"
        assert parsed["From"] == "a@example.net" and not parsed.defects


def test_reject_needs_custom_sensitivity(tmp_path: Path) -> None:
    rules = "body PILLS /order now/\nscore PILLS 30\n"
    custom = scanner(tmp_path, 'Sensitivity = "custom"\nTagLevel = 4\nRejectLevel = 12\n', rules)
    preset = scanner(tmp_path, 'Sensitivity = "veryhigh"\nRejectLevel = 12\n', rules)
    assert custom.scan(RAW).decision == "reject"
    assert preset.scan(RAW).decision == "spam"


def test_a_broken_reload_keeps_the_last_good_configuration(tmp_path: Path) -> None:
    from spamkit.verdict import reload_scanner

    config = tmp_path / "spamkit.toml"
    rules = tmp_path / "local.cf"
    rules.write_text("body PILLS /order now/\nscore PILLS 3\n")
    config.write_text(f'RulePaths = ["{rules}"]\nSensitivity = "custom"\nTagLevel = 2\n')
    good, errors = reload_scanner(None, str(config), None)
    assert not errors and good.scan(RAW).decision == "spam"
    for broken_config, broken_rules, where in (
            ('TagLevle = 3\n', None, f"{config}:"),
            (None, "body PILLS /order now(/\n", f"{rules}:1"),
            (None, "score NOT_DEFINED_YET (2)\n", f"{rules}:1")):
        if broken_config:
            config.write_text(config.read_text() + broken_config)
        if broken_rules:
            rules.write_text(broken_rules)
        kept, errors = reload_scanner(good, str(config), None)
        assert kept is good
        assert errors and errors[0].startswith(where)
        config.write_text(f'RulePaths = ["{rules}"]\nSensitivity = "custom"\nTagLevel = 2\n')
        rules.write_text("body PILLS /order now/\nscore PILLS 3\n")
    # a rule the running scanner started without (skipped, with a warning, as Debian's
    # rule files have three) does not block the next reload
    rules.write_text("body PILLS /order now/\nscore PILLS 3\nbody BROKEN /(/\n")
    skipping, errors = reload_scanner(None, str(config), None)
    assert len(errors) == 1
    config.write_text(f'RulePaths = ["{rules}"]\nSensitivity = "custom"\nTagLevel = 9\n')
    again, errors = reload_scanner(skipping, str(config), None)
    assert again is not skipping and len(errors) == 1 and again.scan(RAW).decision == "ham"


def test_an_address_in_the_display_name_is_not_the_sender(tmp_path: Path) -> None:
    """From: "boss@example.com" <x@spam.example> is from x@spam.example: a welcome-list
    entry for the boss must not let it through (the display name was read as the
    address before)."""
    rules_file = tmp_path / "r.cf"
    rules_file.write_text("body PILLS /order now/\nscore PILLS 7\n"
                          "header USER_IN_WHITELIST eval:check_from_in_whitelist()\nscore USER_IN_WHITELIST -100\n")
    config = config_from_text("", tmp_path / "spamkit.toml", {})
    lists = Lists([check_entry("white", "boss@example.com")])
    s = Scanner(config, load_rules([rules_file], builtin=False), lists)
    forged = b'From: "boss@example.com" <x@spam.example>\r\nSubject: hi\r\n\r\norder now\r\n'
    verdict = s.scan(forged)
    assert verdict.decision == "spam" and verdict.listed is None
    real = b"From: Boss <boss@example.com>\r\nSubject: hi\r\n\r\norder now\r\n"
    assert s.scan(real).listed == "white" and s.scan(real).decision == "ham"


def test_a_quoted_local_part_is_part_of_the_address() -> None:
    assert first_address('<"Books@Books"@publisher.example>') == '"books@books"@publisher.example'
    assert first_address('"Name, a@b.example" <real@x.example>') == "real@x.example"


def _with_headers_line_by_line(raw: bytes, added: list[tuple[str, str]], subject_tag: str | None,
                               dropping: Callable[[bytes], bool]) -> bytes:
    """with_headers as it was written first: a loop over every header line, `dropping`
    asked of each field's first line, lower-cased (and an mbox "From " line kept first)."""
    envelope = b""
    if raw.startswith(b"From ") and b"\n" in raw:
        envelope, raw = raw.split(b"\n", 1)
        envelope += b"\n"
    first_break = raw.find(b"\n")
    cr = b"\r" if first_break > 0 and raw[first_break - 1:first_break] == b"\r" else b""
    blank = re.search(rb"\n\r?\n", raw)
    head, body = (raw[:blank.start()], raw[blank.start():]) if blank else (raw, b"")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = dropping(line.lower())
        if skipping:
            continue
        if subject_tag and line.lower().startswith(b"subject:"):
            line = b"Subject: " + subject_tag.encode() + b" " + line[8:].lstrip()
        kept.append(line)
    if subject_tag and not any(line.lower().startswith(b"subject:") for line in kept):
        kept.append(b"Subject: " + subject_tag.encode() + cr)
    return envelope + b"\n".join([f"{name}: {value}".encode() + cr for name, value in added] + kept) + body


def _spam_field(line: bytes) -> bool:
    return line.startswith(b"x-spam-")


def _pyzor_field(line: bytes) -> bool:
    name, colon, _ = line.partition(b":")
    return bool(colon) and name.rstrip(b" \t") == b"x-spamkit-pyzor"


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b"X-Spam-Flag: YES", b"x-spam-a:", b"X-SPAM-", b"Subject: hi", b"subject:",
                                 b"SUBJECT:x", b"X-Spamkit-Pyzor : listed", b"x-spamkit-pyzorx: a", b"From: a",
                                 b"From a@example.org  Thu Aug 22 14:44:07 2002",
                                 b" cont", b"\tcont", b"\r", b"\n", b"\r\n", b"\n\n", b"\n\r\n", b"a", b" "]),
                max_size=20).map(b"".join),
       st.sampled_from([None, "", "[SPAM]"]), st.booleans())
def test_fields_are_dropped_and_tagged_as_line_by_line(raw: bytes, tag: str | None, pyzor: bool) -> None:
    """with_headers visits only the fields it drops or tags (a loop over every line took
    3.3 s and 526 MB on a 15 MB header block): the same message out as the loop made."""
    added = [("X-Spam-Status", "No")]
    if pyzor:
        assert with_headers(raw, added, tag, dropping=_PYZOR_FIELD) == \
            _with_headers_line_by_line(raw, added, tag, _pyzor_field)
    else:
        assert with_headers(raw, added, tag) == _with_headers_line_by_line(raw, added, tag, _spam_field)
