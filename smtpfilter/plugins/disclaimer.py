"""disclaimer: a footer on our users' mail to the outside world (SME's `smtpd disclaimer`).

The texts are files, laid out as SME lays them out in qpsmtpd's config directory:

    <DisclaimerFile>                  for every domain of ours (LocalDomains)
    <DisclaimerFile>_example.com      for mail from example.com only, instead
    <either of them>.html             an HTML form for HTML bodies (else the text, escaped)

A message gets one when, as on SME, it goes from inside to outside: it comes from one of
our clients (LocalNetworks, RelayClients, or a login), its envelope sender's domain has a
text, and at least one recipient is not at one of LocalDomains. Mail from one of our users
to another gets none. The message is sent once, so every recipient of it sees the footer.

The files are read when they change (a stat a message), so an edit needs no restart. A
footer never costs a message: where it cannot be added (smtpfilter/footer.py says when),
the mail goes on as it came and the log line says why (disclaimer=signed, ...).

Put it before dkimsign in SmtpFilters: a signature made before the footer would not verify.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from spamkit.textfile import UTF8_BOM, is_utf16
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction
from smtpfilter.footer import Footer, append_footer
from smtpfilter.networks import LocalClients

log = logging.getLogger("spamkit.smtpfilter")

HTML_SUFFIX = ".html"


class DisclaimerTexts:
    """The footers in their files, each read again when its file changes."""

    def __init__(self, path: Path, our_domains: list[str]) -> None:
        self.path = path
        self.our_domains = {domain.lower().rstrip(".") for domain in our_domains}
        self._read: dict[Path, tuple[tuple[int, int, int] | None, str | None]] = {}

    def file_for(self, domain: str) -> Path | None:
        """The text file that serves `domain`: its own, else everyone's for one of ours."""
        domain = domain.lower().rstrip(".")
        if not domain or not domain.isprintable() or "/" in domain or domain.startswith("."):
            return None
        own = self.path.with_name(f"{self.path.name}_{domain}")
        if self._text(own) is not None:
            return own
        if domain in self.our_domains and self._text(self.path) is not None:
            return self.path
        return None

    def footer_for(self, domain: str) -> Footer | None:
        """The footer for mail from `domain`, or None when it has none."""
        path = self.file_for(domain)
        if path is None:
            return None
        return _footer(self._text(path) or "", self._text(path.with_name(path.name + HTML_SUFFIX)))

    def _text(self, path: Path) -> str | None:
        """The file's text (None when there is no file or it is empty), read again only
        when its inode, size or modification time changed."""
        try:
            status = os.stat(path)
            key: tuple[int, int, int] | None = (status.st_ino, status.st_size, status.st_mtime_ns)
        except (OSError, ValueError):
            key = None
        known = self._read.get(path)
        if known is not None and known[0] == key:
            return known[1]
        text = read_text_file(path) if key is not None else None
        self._read[path] = (key, text)
        return text


@functools.lru_cache(maxsize=64)
def _footer(text: str, html: str | None) -> Footer:
    """The footer of a text, made once (not for every message)."""
    return Footer.from_text(text, html)


def read_text_file(path: Path) -> str | None:
    """A disclaimer file's text: UTF-8, else Windows-1252 (an older editor's), or UTF-16 with
    its byte-order mark; None when it cannot be read or holds nothing but white space
    (logged: the mail goes without)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        if not isinstance(error, FileNotFoundError):
            log.error("disclaimer: cannot read %s: %s", path, error.strerror or error)
        return None
    if is_utf16(data):  # Notepad's "Unicode"
        text = data.decode("utf-16", "replace")
    else:
        data = data.removeprefix(UTF8_BOM)  # Notepad's UTF-8: the mark is not part of the text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", "replace")
    return text if text.strip() else None


class Disclaimer(Filter):
    name = "disclaimer"
    blocking = True  # stats and reads files

    def __init__(self, local: LocalClients, texts: DisclaimerTexts) -> None:
        self.local = local
        self.texts = texts

    def data(self, tx: Transaction) -> Decision:
        if not self.local.holds(tx) or not self._leaves_us(tx.rcpt_tos):
            return CONTINUE
        footer = self.texts.footer_for(_domain(tx.mail_from))
        if footer is None:
            return CONTINUE
        try:
            footed = append_footer(tx.data, footer)
        except Exception as error:  # a message it cannot take goes on as it came
            log.error("disclaimer: could not add the footer to mail from %s: %s: %s", tx.peer,
                      type(error).__name__, error)
            tx.notes["disclaimer"] = "failed"
            return CONTINUE
        if footed.data is not None:
            tx.data = footed.data
        tx.notes["disclaimer"] = footed.outcome
        return CONTINUE

    def _leaves_us(self, recipients: list[str]) -> bool:
        """Whether a recipient is outside LocalDomains (one with no domain, postmaster,
        is ours)."""
        return any(_domain(recipient) not in ("", *self.texts.our_domains) for recipient in recipients)


def _domain(address: str) -> str:
    """The domain of an address, lower-case; "" when it has none (the null sender)."""
    _, at, domain = address.strip().strip("<>").rpartition("@")
    return domain.lower().rstrip(".") if at else ""
