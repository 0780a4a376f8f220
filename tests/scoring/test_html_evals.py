"""SpamAssassin's HTML evals over spamkit's reading of HTML parts (spamkit.rules.htmlfacts):
each fact on a part made to show it and one made not to, the colour reading, refusal
at load of what cannot be compared, and any text read without an exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.htmlfacts import color_to_rgb, html_facts

RULES = r"""
body LOW_CONTRAST   eval:html_test('font_low_contrast')
body BAD_COLOR      eval:html_test('font_invalid_color')
body BAD_FACE       eval:html_test('font_face_bad')
body OPEN_CENTER    eval:html_tag_balance('center', '!= 0')
body IMAGE_ONLY     eval:html_image_only('0000','0400')
body IMAGE_RATIO    eval:html_image_ratio('0.000','0.002')
body HUGE_FONT      eval:html_range('max_size', '6', 'inf')
body SHORT_HTML     eval:html_eval('length', '< 512')
body LINKED_IMAGE   eval:html_text_match('anchor', '<img>')
body SAVED_FROM     eval:html_text_match('comment', '<!-- saved from url=\(\d{4}\)')
body HAS_STYLE      eval:html_tag_exists('style')
"""


def hits(tmp_path: Path, html: str) -> set[str]:
    path = tmp_path / "html.cf"
    path.write_text(RULES)
    ruleset = load_rules([path], builtin=False)
    assert not ruleset.report.errors and not ruleset.report.skipped, ruleset.report.as_json()
    raw = b"Content-Type: text/html; charset=utf-8\n\n" + html.encode()
    counts, _ = ruleset.match_counts(MessageContext(raw, parse_message(raw)))
    return set(counts)


PAGE = "<html><body>{}</body></html>"
WORDS = "Our quarterly report is attached for your review. " * 12


def test_text_in_the_colour_of_its_background(tmp_path: Path) -> None:
    assert "LOW_CONTRAST" in hits(tmp_path, PAGE.format(f'<font color="#fefefe">{WORDS}</font>'))
    assert "LOW_CONTRAST" in hits(tmp_path, PAGE.format(
        f'<div style="color: rgb(10,10,10); background-color: black">{WORDS}</div>'))
    assert "LOW_CONTRAST" in hits(tmp_path, PAGE.format(f'<span style="color:white">{WORDS}</span>'))
    assert "LOW_CONTRAST" not in hits(tmp_path, PAGE.format(f'<font color="navy">{WORDS}</font>'))
    # white on a dark table cell, set by CSS, reads well
    assert "LOW_CONTRAST" not in hits(tmp_path, PAGE.format(
        f'<table><tr><td style="background:#000080 url(x.png)"><font color="white">{WORDS}</font></td></tr></table>'))
    assert "BAD_COLOR" in hits(tmp_path, PAGE.format(f'<font color="blurple">{WORDS}</font>'))


def test_tags_fonts_and_images(tmp_path: Path) -> None:
    open_center = hits(tmp_path, PAGE.format(f"<center>{WORDS}"))
    assert "OPEN_CENTER" in open_center and "HUGE_FONT" not in open_center
    assert "OPEN_CENTER" not in hits(tmp_path, PAGE.format(f"<center>{WORDS}</center>"))
    assert "HUGE_FONT" in hits(tmp_path, PAGE.format(f"<font size=+4>{WORDS}</font>"))
    assert "BAD_FACE" in hits(tmp_path, PAGE.format(f'<font face="@@ x">{WORDS}</font>'))
    assert "BAD_FACE" not in hits(tmp_path, PAGE.format(f'<font face="Arial, Helvetica, sans-serif">{WORDS}</font>'))
    picture = hits(tmp_path, '<html><a href="http://x.example/"><img src="cid:a" width=600 height=400>'
                             ' Click</a></html>')
    assert {"IMAGE_ONLY", "IMAGE_RATIO", "LINKED_IMAGE", "SHORT_HTML"} <= picture
    prose = hits(tmp_path, PAGE.format(WORDS * 3 + '<img src="cid:a" width=20 height=20>'))
    assert not prose & {"IMAGE_ONLY", "IMAGE_RATIO", "LINKED_IMAGE", "SHORT_HTML"}


def test_comments_and_tags_that_carry_no_text(tmp_path: Path) -> None:
    saved = hits(tmp_path, "<!-- saved from url=(0022)http://internet.e-mail -->"
                 + PAGE.format("<style>p {color: red}</style>" + WORDS))
    assert {"SAVED_FROM", "HAS_STYLE"} <= saved
    facts = html_facts("<p>a <script>var hidden = 1;</script> b</p></x-made-up></p>")
    assert facts.non_space_length == 2  # script text is not shown
    assert facts.closed_extra == 2 and facts.inside["p"] == 0  # </x-made-up>, the second </p>
    assert facts.value("bad_tag_ratio") == 1 / 6  # of six tags, x-made-up is not HTML


def test_colours_as_mail_readers_read_them() -> None:
    assert color_to_rgb("White") == "#ffffff"
    assert color_to_rgb(" navy ") == "#000080"
    assert color_to_rgb("#abc") == "#aabbcc"
    assert color_to_rgb("#12345") == "#112233"  # five digits: the first three count
    assert color_to_rgb("rgb(255, 0, 16)") == "#ff0010"
    assert color_to_rgb("rgb(100%, 0%, 50%)") == "#ff007f"
    assert color_to_rgb("ffffff") == "invalid"  # no "#": not a colour
    assert color_to_rgb("blurple") == "invalid"


def test_what_cannot_be_compared_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "odd.cf"
    path.write_text("body A eval:html_tag_balance('body', '; system(1)')\n"
                    "body B eval:html_range('unknown_value', '1', '2')\n"
                    "body C eval:html_test('no_such_fact')\n"
                    "body D eval:html_text_match('anchor', '(unclosed')\n"
                    "body E eval:html_tag_balance('body', '!= 0')\n")
    ruleset = load_rules([path], builtin=False)
    assert set(ruleset.rules) == {"E"}
    assert ruleset.report.skipped == {"eval not implemented": 4}


def test_reading_stops_at_the_deadline() -> None:
    """A message's HTML parts share a reading budget (HTML_TIME_BUDGET); past it, a part
    keeps what was read so far and says so. Read at once, 500 kB of "<b>x" took 1.8 s."""
    cut = html_facts("<b>x" * 50_000, deadline=0.0)  # (long past)
    assert "cut_short" in cut.flags and 0 < cut.inside["b"] < 50_000
    whole = html_facts("<b>x" * 100)
    assert "cut_short" not in whole.flags and whole.inside["b"] == 100


def test_an_unfinished_construct_is_not_read_to_its_end() -> None:
    """html.parser finishes an unclosed "<?" or "</" by searching the rest once for each
    "<" in it (500 kB of them: seconds); a long unfinished tail holds no tag and is
    left unread."""
    facts = html_facts("<p>ok</p>" + "<?" * 100_000)
    assert facts.inside["p"] == 0 and facts.non_space_length == 2


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"' abcdefimgtpsyl-!:;#()&,[]?0123456789\n")), max_size=300))
def test_any_text_reads_without_an_exception(source: str) -> None:
    facts = html_facts(source)
    assert facts.length == len(source)
    assert all(count >= 0 for count in facts.inside.values())
    for name in ("closed_extra_ratio", "bad_tag_ratio", "non_element_ratio", "obfuscation_ratio"):
        value = facts.value(name)
        assert value is None or 0 <= value <= 1
