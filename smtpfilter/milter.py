"""The filter chain as a milter: Postfix's smtpd keeps the SMTP session and asks us at each
stage, over the milter protocol (version 6; Sendmail's too, not tried).

Postfix's own way to call a content filter before its queue (smtpd_milters, as rspamd,
OpenDKIM and clamav-milter are called), without a second SMTP server in the path: the
client talks to Postfix, and Postfix asks us at connect, HELO, MAIL, each RCPT and the
end of the message. A refusal is given as the reply Postfix sends; what the filters change
in the message (X-Spam headers, a tagged subject, a forged X-Spam-Status taken out, a
footer) goes back as header and body edits. A message we cannot check in time, or any
failure of ours, answers 451, so the mail waits at the sender; when we are not running at
all, Postfix's milter_default_action (tempfail, say) decides.

Wire format: a 4-byte big-endian length, a command byte, its data (libmilter's mfdef.h).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import struct
import time
from dataclasses import dataclass, field

from smtpfilter.filter import Action, Decision, Transaction
from smtpfilter.logtext import printable
from smtpfilter.server import (DEADLINE_SHARE, OVER_BUDGET, TEMPFAIL, StageRunner,
                               normalize_line_endings)
from smtpfilter.trace import Trace, new_id

log = logging.getLogger("spamkit.smtpfilter")

VERSION = 6
MAX_PACKET = 1 << 20  # Postfix sends body chunks of at most 64 kB; a macro or header, far less
CHUNK = 65535  # a body replacement's largest packet (MILTER_CHUNK_SIZE)

# the commands (SMFIC_*) and replies (SMFIR_*) used here
ABORT, BODY, CONNECT, MACRO, END_OF_BODY = b"A", b"B", b"C", b"D", b"E"
HELO, QUIT_NEW_CONNECTION, HEADER, MAIL, END_OF_HEADERS = b"H", b"K", b"L", b"M", b"N"
OPTIONS, QUIT, RCPT, DATA, UNKNOWN = b"O", b"Q", b"R", b"T", b"U"
CONTINUE, REPLACE_BODY, ADD_HEADER, INSERT_HEADER, CHANGE_HEADER, REPLY_CODE = b"c", b"b", b"h", b"i", b"m", b"y"

# what we may do to a message (SMFIF_*): add headers, change the body, change headers
ACTIONS = 0x01 | 0x02 | 0x10
# how we want to be asked (SMFIP_*): no reply to each header or body chunk, and header
# values exactly as written (the space after the colon included)
NO_REPLY_TO_HEADERS, NO_REPLY_TO_BODY, HEADER_LEADING_SPACE = 0x80, 0x80000, 0x100000
WANTED_PROTOCOL = NO_REPLY_TO_HEADERS | NO_REPLY_TO_BODY | HEADER_LEADING_SPACE
_FIELD_START = re.compile(rb"\r\n(?![ \t])")


class MilterProtocolError(Exception):
    """The MTA sent what the protocol does not allow: the connection is closed."""


@dataclass
class HeaderEdit:
    """One change to the header section, as the milter protocol says it."""

    command: bytes  # CHANGE_HEADER (an empty value removes), INSERT_HEADER or ADD_HEADER
    name: bytes
    value: bytes
    index: int = 0  # CHANGE_HEADER: which one of that name (1 the first); INSERT_HEADER: where

    def packet(self, leading_space: bool = True) -> bytes:
        """The packet; without `leading_space` (negotiated), the MTA puts the space after
        the colon itself."""
        value = self.value if leading_space or not self.value.startswith(b" ") else self.value[1:]
        prefix = b"" if self.command == ADD_HEADER else struct.pack(">I", self.index)
        return packet(self.command, prefix + self.name + b"\0" + value + b"\0")


def packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + command + data


async def read_packet(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(command, data) of the next packet; IncompleteReadError at the end of the stream."""
    length = struct.unpack(">I", await reader.readexactly(4))[0]
    if not 1 <= length <= MAX_PACKET:
        raise MilterProtocolError(f"a packet of {length} bytes")
    body = await reader.readexactly(length)
    return body[:1], body[1:]


def strings(data: bytes) -> list[bytes]:
    """A packet's NUL-terminated strings."""
    return data.split(b"\0")[:-1] if data.endswith(b"\0") else data.split(b"\0")


def text(value: bytes) -> str:
    """The MTA's bytes as text: UTF-8 where they are (SMTPUTF8 addresses), else Latin-1."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def fields(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(the header fields of a CRLF message as (name, value) with the value as written
    after the colon, continuation lines joined by LF as the protocol carries them; its
    body, after the empty line)."""
    if data.startswith(b"\r\n"):  # (no field at all: the body starts after the empty line)
        return [], data[2:]
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[:end], data[end + 4:])
    found = []
    for line in _FIELD_START.split(head):
        name, colon, value = line.partition(b":")
        if colon:
            found.append((name, value.replace(b"\r\n", b"\n")))
    return found, body


def assembled(headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The CRLF message of the MTA's fields (values as written after the colon) and body:
    what `fields` takes apart again."""
    return b"".join(name + b":" + _crlf(value) + b"\r\n" for name, value in headers) + b"\r\n" + body


def header_edits(before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]]) -> list[HeaderEdit]:
    """The edits that turn header section `before` into `after`, in the order they are to
    be sent: changes and removals first, each naming its field by the position it has
    among fields of its name before any edit (the last first, so that none moves one still
    to come); then insertions, each at the position it will have. Postfix counts its own
    Received header, which it does not show us, as the first: what goes above every field
    we were shown goes above it too, as a proxy's own header would."""
    keys = [(name.lower(), value) for name, value in before]
    matcher = difflib.SequenceMatcher(None, keys, [(name.lower(), value) for name, value in after],
                                      autojunk=False)
    changes: list[tuple[int, HeaderEdit]] = []
    insertions: list[tuple[int, int]] = []  # (position in `before` to go in front of, index in `after`)
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        if operation == "equal":
            continue
        if operation == "replace" and i2 - i1 == j2 - j1 and all(
                before[i][0].lower() == after[j][0].lower() and after[j][1]  # (an empty one removes)
                for i, j in zip(range(i1, i2), range(j1, j2))):
            for i, j in zip(range(i1, i2), range(j1, j2)):
                changes.append((i, HeaderEdit(CHANGE_HEADER, before[i][0], after[j][1], _occurrence(before, i))))
            continue
        for i in range(i1, i2):  # ("delete", or a "replace" that is not field for field)
            changes.append((i, HeaderEdit(CHANGE_HEADER, before[i][0], b"", _occurrence(before, i))))
        insertions += [(i1, j) for j in range(j1, j2)]
    edits = [edit for _, edit in sorted(changes, key=lambda change: -change[0])]
    removed = {i for i, edit in changes if not edit.value}
    # the MTA's list as the insertions find it: its Received (None), the fields kept (their
    # position in `before`), and each field inserted so far (-1)
    section: list[int | None] = [None] + [i for i in range(len(before)) if i not in removed]
    on_top = 0
    for position, j in insertions:
        if position == 0:
            index, on_top = on_top, on_top + 1
        elif position >= len(before):
            edits.append(HeaderEdit(ADD_HEADER, *after[j]))
            section.append(-1)
            continue
        else:  # (in front of the first field kept at or after `position`, after any put there)
            index = next((k for k, kept in enumerate(section) if kept is not None and kept >= position),
                         len(section))
        section.insert(index, -1)
        edits.append(HeaderEdit(INSERT_HEADER, *after[j], index=index))
    return edits


def _occurrence(headers: list[tuple[bytes, bytes]], position: int) -> int:
    name = headers[position][0].lower()
    return sum(1 for other, _ in headers[:position + 1] if other.lower() == name)


def reply_packet(reply: str) -> bytes:
    """A refusal as the MTA is to send it: "550 5.7.1 text" (CR, LF and NUL, which would
    end or break the reply, as spaces; "%" doubled, since Postfix reads the text as
    libmilter's smfi_setreply writes it, and dropped a lone "%": "100% spam" reached the
    client as "100 spam")."""
    text = re.sub(r"[\r\n\0]", " ", reply).replace("%", "%%")
    return packet(REPLY_CODE, text.encode("utf-8", "replace") + b"\0")


@dataclass
class _Session:
    """One MTA connection: the client it is about, and the transaction under way."""

    peer: str = ""
    peer_name: str = ""  # the MTA's confirmed name for the client ("unknown" if none)
    helo: str = ""
    macros: dict[bytes, bytes] = field(default_factory=dict)
    protocol: int = 0
    spamkit_accepted: bool = False  # (StageRunner._run: a whitelist accepted the session)
    # the transaction: reset by ABORT and after the end of each message
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)

    def new_transaction(self) -> None:
        self.mail_from, self.rcpt_tos, self.notes = "", [], {}
        self.headers, self.body = [], bytearray()

    def macro(self, name: str) -> str:
        return text(self.macros.get(name.encode(), b""))

    def transaction(self) -> Transaction:
        return Transaction(peer=self.peer, helo=self.helo, mail_from=self.mail_from,
                           rcpt_tos=list(self.rcpt_tos), notes=self.notes,
                           authenticated=self.macro("{auth_authen}"))


class MilterHandler(StageRunner):
    """Answers an MTA's milter connections with the filter chain."""

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session()
        try:
            while True:
                try:
                    command, data = await read_packet(reader)
                except asyncio.IncompleteReadError:
                    return
                if command == QUIT:
                    return
                if command == QUIT_NEW_CONNECTION:  # (the next SMTP session, on this socket)
                    session = _Session(protocol=session.protocol)
                    continue
                answer = await self._answer(session, command, data)
                if answer:
                    writer.write(answer)
                    await writer.drain()
        except MilterProtocolError as error:
            log.warning("milter: %s; connection closed", error)
        except (ConnectionError, OSError):
            pass  # (the MTA went away: it asks again, or applies milter_default_action)
        finally:
            writer.close()

    async def _answer(self, session: _Session, command: bytes, data: bytes) -> bytes:
        """The reply packets to one command (b"" where none is due)."""
        if command == OPTIONS:
            return _negotiated(session, data)
        if command == MACRO:
            if data:  # (the stage's command byte, then name/value pairs)
                pairs = strings(data[1:])
                session.macros.update(zip(pairs[0::2], pairs[1::2]))
            return b""
        if command == ABORT:
            session.new_transaction()
            return b""
        if command == HEADER:
            name, value = (strings(data) + [b"", b""])[:2]
            # (an MTA that would not give the space after the colon as written takes one
            # for granted: one is put in, and taken off again in our edits)
            session.headers.append((name, value if session.protocol & HEADER_LEADING_SPACE else b" " + value))
            return b"" if session.protocol & NO_REPLY_TO_HEADERS else packet(CONTINUE)
        if command == BODY:
            session.body += data
            return b"" if session.protocol & NO_REPLY_TO_BODY else packet(CONTINUE)
        if command in (CONNECT, HELO, MAIL, RCPT):
            try:
                refusal = await self._envelope(session, command, data)
            except Exception:
                log.exception("milter %s failed", {CONNECT: "connect", HELO: "HELO", MAIL: "MAIL",
                                                   RCPT: "RCPT"}[command])
                refusal = TEMPFAIL
            return packet(CONTINUE) if refusal is None else reply_packet(refusal)
        if command == END_OF_BODY:
            session.body += data
            try:
                return await self._end_of_message(session)
            finally:
                session.new_transaction()
        if command in (DATA, END_OF_HEADERS, UNKNOWN):
            return packet(CONTINUE)
        raise MilterProtocolError(f"an unknown command {command!r}")

    async def _envelope(self, session: _Session, command: bytes, data: bytes) -> str | None:
        """The chain's connect, HELO, MAIL or RCPT stage: a refusal, or None."""
        if command == CONNECT:
            session.peer_name, session.peer = _client(data)
            return await self._stage(session, "connect", Transaction(peer=session.peer))
        if command == HELO:
            session.helo = text(strings(data)[0]) if data else ""
            return await self._stage(session, "helo", Transaction(peer=session.peer, helo=session.helo))
        arguments = strings(data)
        address = text(arguments[0]).strip().removeprefix("<").removesuffix(">") if arguments else ""
        if command == MAIL:
            session.new_transaction()
            session.mail_from = address
            return await self._stage(session, "mail", session.transaction())
        refusal = await self._stage(session, "rcpt", session.transaction(), address)
        if refusal is None:
            session.rcpt_tos.append(address)
        return refusal

    async def _end_of_message(self, session: _Session) -> bytes:
        """The DATA stage, within the scan budget: a refusal, or the message's edits then
        CONTINUE (the MTA goes on, and its other milters and checks still have their say)."""
        started = time.monotonic()
        queue_id = session.macro("i") or new_id()
        tx = session.transaction()
        tx.deadline = started + self.scan_budget * DEADLINE_SHARE
        self.in_flight += 1
        answer, reply, deciding = reply_packet(TEMPFAIL), TEMPFAIL, "error"
        try:
            before, body = session.headers, normalize_line_endings(bytes(session.body))
            received = Trace(None, session.macro("j") or "localhost").received(
                session.peer, session.helo, esmtp=True, tls=bool(session.macro("{tls_version}")),
                rcpt_tos=tx.rcpt_tos, message_id=queue_id, authenticated=bool(tx.authenticated),
                name=session.peer_name, software=session.macro("v").split(" ")[0] or "MTA")
            tx.data = received + assembled(before, body)
            checking = asyncio.get_running_loop().run_in_executor(None, self._data_stage, session, tx)
            try:
                decision = await asyncio.wait_for(checking, self.scan_budget)
            except asyncio.TimeoutError:
                log.warning("DATA checks of message %s from %s took over %gs; answered 451",
                            queue_id, tx.peer, self.scan_budget)
                decision = Decision(Action.TEMPFAIL, OVER_BUDGET, "budget")
            if decision.action in (Action.REJECT, Action.TEMPFAIL):
                answer, reply, deciding = reply_packet(decision.reply), decision.reply, decision.filter
            else:
                answer = _edits(before, body, tx.data, received,
                                bool(session.protocol & HEADER_LEADING_SPACE)) + packet(CONTINUE)
                reply, deciding = "250 2.0.0 Ok", "milter"
        except Exception:
            log.exception("milter end of message failed")
        finally:
            self.in_flight -= 1
        await asyncio.get_running_loop().run_in_executor(
            None, self._finished, tx, reply, deciding, started, queue_id, bool(session.macro("{tls_version}")))
        return answer


def _negotiated(session: _Session, data: bytes) -> bytes:
    """Our answer to the MTA's options: version 6 (or the MTA's own, if older), the edits we
    make, and of the ways of asking we prefer, those the MTA offers."""
    if len(data) < 12:
        raise MilterProtocolError("an options packet of %d bytes" % len(data))
    version, actions, offered = struct.unpack(">III", data[:12])
    if actions & ACTIONS != ACTIONS:
        log.warning("milter: the MTA does not let us add or change headers or the body "
                    "(it offers actions 0x%x): the message's edits will be refused", actions)
    session.protocol = offered & WANTED_PROTOCOL
    return packet(OPTIONS, struct.pack(">III", min(version, VERSION), actions & ACTIONS, session.protocol))


def _client(data: bytes) -> tuple[str, str]:
    """(the MTA's name for the client, its address) from CONNECT: the name, a family byte
    (4, 6, L for a local socket, U unknown), a port and the address."""
    name, _, rest = data.partition(b"\0")
    if len(rest) < 3 or rest[:1] not in (b"4", b"6"):
        return text(name), "127.0.0.1"  # (a local socket, or unknown: mail from this machine)
    address = text(rest[3:].rstrip(b"\0"))
    if address.lower().startswith("ipv6:"):
        address = address[5:]
    return text(name), address


def _crlf(value: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", value)


def _edits(before: list[tuple[bytes, bytes]], body: bytes, after: bytes, received: bytes,
           leading_space: bool) -> bytes:
    """The packets that make the MTA's copy of the message what the filters left in
    `after`: our scoring-only Received header (`received`, the MTA writes its own) is not
    one of them."""
    if after.startswith(received):
        after = after[len(received):]
    else:  # (a filter put something above it)
        after = after.replace(received, b"", 1)
    new_headers, new_body = fields(after)
    edits = b"".join(edit.packet(leading_space) for edit in header_edits(before, new_headers))
    if new_body != body:
        edits += b"".join(packet(REPLACE_BODY, new_body[start:start + CHUNK])
                          for start in range(0, len(new_body), CHUNK)) or packet(REPLACE_BODY)
        log.debug("milter: body replaced (%d → %d bytes)", len(body), len(new_body))
    if edits:
        log.debug("milter: %s", printable(repr(edits[:300])))
    return edits
