"""Which character sets a site expects (SpamAssassin's `ok_locales`), and which it would
call "far away".

ASCII and every ISO 8859, Unicode and Windows charset is fine anywhere. The charsets of
Japanese, Korean, Chinese, Thai and the Cyrillic languages are fine where their
language is among the locales. Any other charset is far away, as in SpamAssassin's
Locales.pm: with `ok_locales en`, KOI8-R, Big5 and x-mac-roman all are. The names are
compared as Locales.pm compares them: upper case, letters and digits only ("koi8-r" is
KOI8R).
"""

from __future__ import annotations

import re

from spamkit.lazyregex import LazyPattern

_CYRILLIC = frozenset({"KOI8R", "KOI8U", "KOI8T", "ISOIR111", "CP1251", "GEORGIANPS", "PT154", "CP866"})
_CHINESE = frozenset({"GB1988", "GB2312", "GB231219800", "GB18030", "GBK", "BIG5HKSCS", "BIG5", "EUCTW",
                      "ISO2022CN"})
# language (the first two letters of a locale) -> the far-away charsets it reads
CHARSETS_BY_LANGUAGE: dict[str, frozenset[str]] = {
    "ja": frozenset({"EUCJP", "JISX020119760", "JISX020819830", "JISX020819900", "JISX020819970",
                     "JISX021219900", "JISX021320001", "JISX021320002", "SHIFTJIS", "ISO2022JP", "SJIS", "JIS7",
                     "JISX0201", "JISX0208", "JISX0212"}),
    "ko": frozenset({"EUCKR", "KSC56011987"}),
    "th": frozenset({"TIS620"}),
    "zh": _CHINESE,
    # the languages written in Cyrillic (Georgian's own charset among them)
    **{language: _CYRILLIC for language in ("ru", "ka", "tg", "be", "uk", "bg")},
}
_FINE_EVERYWHERE = LazyPattern(r"USASCII$|ASCII$|ISO8859|ISO10646|UTF|UCS|CP125|WINDOWS|IBM852$|UNICODE11UTF[78]"
                              r"|XUNKNOWN$|ISO$")
_LANGUAGE = LazyPattern(r"[a-z][a-z]")


def every_locale(locales: tuple[str, ...]) -> bool:
    """`ok_locales all` (the default): no charset is far away, and the rules that look
    for one do nothing."""
    return "all" in locales


def charset_is_ok(charset: str, locales: tuple[str, ...]) -> bool:
    """The charset is fine for a site that reads these locales ("en", "ja", "zh_TW"):
    fine anywhere, or one of the charsets of a locale's language ("C" counts as "en")."""
    name = re.sub(r"[^A-Z0-9]", "", charset.upper())
    name = name[2:] if name.startswith("3D") else name  # "=3D" left by quoted-printable
    if _FINE_EVERYWHERE.match(name):
        return True
    for locale in locales:
        locale = "en" if locale == "C" else locale
        language = locale[:2] if _LANGUAGE.match(locale) else locale
        if name in CHARSETS_BY_LANGUAGE.get(language, ()):
            return True
    return False
