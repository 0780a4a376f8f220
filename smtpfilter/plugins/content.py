"""Content checks before scoring: required headers and blocked attachment types."""

from __future__ import annotations

from collections import Counter

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from smtpfilter.logtext import reply_text
from smtpfilter.networks import LocalClients
from spamkit.message import ParseLimits, list_attachments
from spamkit.message.headers import header_fields


class Headers(Filter):
    """RequireHeaders: From: and Date: are required (RFC 5322), and not empty.
    RefuseRepeatedHeaders: a field RFC 5322 3.6 allows once is there at most once. Both
    as qpsmtpd's headers plugin checks: with two From fields DMARC has no author to
    judge, and a mail program shows one of them. SmtpMaxHeaderSize: a header section
    larger than that is refused first, as Exim's header_maxsize does (reading 15 MB of
    short fields took this check 2.8 s and 257 MB, and each check after it more). None
    applies to LocalNetworks (SME's switch: Outlook's test message has no Date)."""

    name = "headers"

    def __init__(self, required: bool, local_networks: list[str], refuse_repeated: bool = False,
                 max_bytes: int = 1_000_000) -> None:
        self.required = required
        self.refuse_repeated = refuse_repeated
        self.max_bytes = max_bytes
        self.local = LocalClients(local_networks, [])

    def data(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        end = tx.data.find(b"\r\n\r\n")
        if (end if end >= 0 else len(tx.data)) > self.max_bytes:  # (no empty line: all of it is header)
            return reject(self.name, f"552 5.3.4 Message header section too large (over {self.max_bytes} bytes)")
        if not (self.required or self.refuse_repeated):
            return CONTINUE
        fields = header_fields(tx.data[:end if end >= 0 else len(tx.data)].replace(b"\r\n", b"\n"))
        counts = Counter(name for name, _ in fields)
        if self.required:
            missing = [name for name in ("From", "Date") if not counts[name.lower()]]
            if missing:
                return reject(self.name, f"550 5.6.0 Message has no {' and '.join(missing)} header")
            empty = [name for name in ("From", "Date")  # (as qpsmtpd's: an empty one is none)
                     if not any(value.strip() for field, value in fields if field == name.lower())]
            if empty:
                return reject(self.name, f"550 5.6.0 Message has an empty {' and '.join(empty)} header")
        for name in SINGULAR_FIELDS if self.refuse_repeated else ():
            if (count := counts[name.lower()]) > 1:
                return reject(self.name, f"550 5.6.0 Message has {count} {name} headers "
                                         "(RFC 5322 3.6 allows one)")
        return CONTINUE


# (header_fields reads "From :", RFC 5322's obsolete syntax, as From, as mail programs do)
SINGULAR_FIELDS = ("From", "Date", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To",
                   "References", "Subject")


class Attachments(Filter):
    """BlockedExtensions: refuse mail carrying a file of a refused type. Every name a
    mail program could save a part under counts (Content-Disposition's filename,
    Content-Type's name, uuencoded files, RFC 2231 and 2047 undone, trailing dots and
    spaces dropped as Windows drops them), in the whole message, not only the part that
    scoring reads; every file in a TNEF winmail.dat, which Outlook shows as attachments;
    and, with `in_archives`, the files inside archives. Mail too
    deeply nested, or with too many parts or members to be looked through, is refused
    too: what cannot be checked could carry anything; so is a fragment of a message sent
    in parts (message/partial), which a mail program may put together. With
    `refuse_encrypted` (BlockEncryptedArchives), so is a zip whose files are encrypted."""

    name = "attachments"

    def __init__(self, extensions: list[str], in_archives: bool = True, max_bytes: int = 1_000_000_000,
                 refuse_encrypted: bool = False) -> None:
        self.extensions = {e.lower().lstrip(".") for e in extensions}
        self.in_archives = in_archives
        self.refuse_encrypted = refuse_encrypted
        # the whole message as the session took it, a boundary of any length; nesting as deep
        # as scoring's (and Postfix's) cap, more parts
        self.limits = ParseLimits(max_message_bytes=max_bytes, max_parts=UNCHECKABLE_PARTS,
                                  max_boundary_length=max_bytes)

    def data(self, tx: Transaction) -> Decision:
        if not self.extensions and not self.refuse_encrypted:
            return CONTINUE
        listing = list_attachments(tx.data, self.limits)
        uncheckable = listing.facts & ({"cap-mime-depth", "cap-mime-parts", "cap-tnef-files"}
                                       | ({"cap-archive-members"} if self.in_archives else set()))
        if uncheckable:
            return reject(self.name, "552 5.6.0 Message structure too large to check its attachments "
                                     f"({', '.join(sorted(uncheckable))})")
        for attachment in listing.attachments:
            if attachment.content_type == "message/partial":  # (amavisd-new's sample config can ban them)
                return reject(self.name, "552 5.6.0 Messages sent in parts (message/partial) are not "
                                         "accepted: their attachments cannot be checked")
            for name in (attachment.filename, *attachment.other_names):
                if (extension := blocked_extension(name, self.extensions)) is not None:
                    return reject(self.name, f"552 5.7.0 Attachments of type .{extension} are not accepted")
            if attachment.encrypted and self.refuse_encrypted:
                return reject(self.name, "552 5.7.0 Encrypted archives are not accepted "
                                         f"({reply_text(attachment.filename or 'an archive')})")
            for member in attachment.members if self.in_archives else ():
                if (extension := blocked_extension(member, self.extensions)) is not None:
                    return reject(self.name, f"552 5.7.0 Attachments of type .{extension} are not accepted "
                                             f"(in {reply_text(attachment.filename or 'an archive')})")
        return CONTINUE


UNCHECKABLE_PARTS = 10_000  # MIME parts; no mail a person sends has as many


def blocked_extension(name: str, extensions: set[str]) -> str | None:
    """The refused extension `name` ends in, or None. Only the last path component
    counts (a zip member may be dir/file.exe); Windows drops trailing dots and spaces,
    so invoice.exe. runs as invoice.exe."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip().rstrip(". ").lower()
    if "." not in base:
        return None
    extension = base.rsplit(".", 1)[1]
    return extension if extension in extensions else None
