"""Hand a message to the next hop; the upstream reply is the next hop's reply.

A next hop that is down, slow or broken gives 451: the sender keeps the message and
tries again. A 4xx or 5xx from the next hop is passed back as it came.

Upstream heard 250 for every recipient before DATA, so one reply must now stand for all
of them. The message goes on only when the next hop takes every recipient; if it refuses
some, nothing is sent (RSET) and upstream hears a refusal for the whole message: 4xx if
any refusal was temporary (the sender retries, no one gets it twice), else the next
hop's 5xx (the sender hears of it). Answering 250 would lose the refused recipients'
copies without a word. The archive copy (BccAddress) is the exception: the sender never
named it, so its refusal is logged and the message goes on to the recipients.

So that this rarely has to happen, each recipient is first put to the next hop at RCPT
(`RelayPool.verify`, SmtpVerifyRecipients): one it refuses there is refused alone, and
the others' message goes on.

A next hop may take fewer recipients a message than we do (Postfix's
smtpd_recipient_limit). It says so with 452 4.5.3 once it has taken its fill (RFC 5321
4.5.3.1.10), or ahead of time with LIMITS RCPTMAX (RFC 9422). The pool remembers that
cap, and the server answers 452 at RCPT beyond it, which tells the sender to send the
other recipients in a transaction of their own. The message that met the cap is deferred
whole and comes back split: resent as it came, it would be deferred forever.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import threading

from smtpfilter.parameters import DsnRequest, xtext

log = logging.getLogger("spamkit.smtpfilter")

RELAY_TIMEOUT = 60.0  # below Postfix's 100 s smtpd_proxy_timeout
# refusals one kept-open connection may collect before it is replaced. An MTA counts a
# client's errors per session: Postfix answers each one past smtpd_soft_error_limit (10)
# only after a pause of a second and more, and drops the client at smtpd_hard_error_limit
# (20). Recipients refused at RCPT (SmtpVerifyRecipients, under a dictionary attack every
# few RCPTs) each count, so a connection kept for hours reached both: each refusal then
# held a worker thread for 1-4 s. A new connection starts at none.
ERROR_BUDGET = 5
# RSETs one kept-open connection may send before it is replaced. Postfix counts RSET,
# NOOP, VRFY and ETRN as junk, and past smtpd_junk_command_limit (100) each one is an error
# too. A recipient's check at RCPT (`verify`) is a transaction with no DATA, ended with
# RSET, and the connection is checked with RSET before each use: after some 55 checks a
# connection was slowed, and at 60 dropped mid-check, which answered a good recipient 451.
RESET_BUDGET = 40


def _text(message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return " ".join(text.split())


class _Connection(smtplib.SMTP):
    """A connection to the next hop that counts what its smtpd counts against a client:
    the refusals (4xx and 5xx) it has heard and the RSETs it has sent."""

    refusals = 0
    resets = 0

    def getreply(self) -> tuple[int, bytes]:
        code, message = super().getreply()
        if code >= 400:
            self.refusals += 1
        return code, message

    def rset(self) -> tuple[int, bytes]:
        self.resets += 1
        return super().rset()

    @property
    def spent(self) -> bool:
        """Whether to replace it before the next hop's limits for one session come near."""
        return self.refusals >= ERROR_BUDGET or self.resets >= RESET_BUDGET


class RelayPool:
    """Relay over kept-open connections, one a worker thread, checked with RSET before use
    and replaced before the next hop's limits for one session come near (ERROR_BUDGET,
    RESET_BUDGET).

    A connection that fails its RSET is replaced before anything is sent, so reuse never
    risks a message; a failure once the message is under way closes the connection and
    gives 451 (never retried, so never sent twice). A 4xx or 5xx from the next hop is
    passed back as it came; some recipients refused still means the rest have it.
    """

    def __init__(self, host: str, port: int, timeout: float = RELAY_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._local = threading.local()
        # the most recipients the next hop takes in one message, once it has said (None:
        # no cap known); only ever lowered, and kept for the life of the process
        self.recipient_limit: int | None = None

    def _learn_limit(self, limit: int, how: str) -> None:
        if self.recipient_limit is None or limit < self.recipient_limit:
            self.recipient_limit = limit
            log.warning("the next hop %s:%d takes at most %d recipients a message (%s): more are "
                        "answered 452 at RCPT, so that senders send them in another transaction, "
                        "until serve restarts", self.host, self.port, limit, how)

    def _read_limits(self, client: smtplib.SMTP) -> None:
        """LIMITS RCPTMAX=n in the next hop's EHLO reply (RFC 9422)."""
        for item in client.esmtp_features.get("limits", "").split():
            name, _, value = item.partition("=")
            if name.upper() == "RCPTMAX" and value.isascii() and value.isdigit() and 0 < len(value) <= 9 \
                    and int(value) > 0:  # (a longer number is no limit; "²" is a digit to isdigit)
                self._learn_limit(int(value), "LIMITS RCPTMAX")

    def _client(self) -> smtplib.SMTP:
        client: _Connection | None = getattr(self._local, "client", None)
        if client is not None and client.spent:
            self._drop(polite=True)
            client = None
        if client is not None:
            # only a 250 says it lives: Postfix ends a client idle past smtpd_timeout
            # (300 s) with "421 4.4.2 Error: timeout exceeded", which, read as RSET's
            # answer, was taken for a live connection, and on a quiet server the first
            # message after each pause heard 451
            try:
                code, _ = client.rset()
                if code == 250:
                    return client
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        client = _Connection(self.host, self.port, timeout=self.timeout)
        self._local.client = client
        return client

    def _drop(self, polite: bool = False) -> None:
        """Forget this thread's connection: closed, or when `polite` ended with QUIT."""
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                if polite:
                    client.quit()
                client.close()
            except (smtplib.SMTPException, OSError):
                pass

    def send(self, mail_from: str, rcpt_tos: list[str], data: bytes, archive: str = "",
             smtputf8: bool = False, eight_bit: bool = False, dsn: DsnRequest | None = None,
             origin: dict[str, str] | None = None) -> str:
        """Relay to `rcpt_tos`, and to `archive` too if the next hop takes it. What the
        client asked goes on where the next hop takes it: `smtputf8` as SMTPUTF8,
        `eight_bit` (BODY=8BITMIME) as that, `dsn` as DSN parameters (RFC 3461). `origin`
        (XFORWARD's NAME, ADDR, HELO, PROTO...) names the client to a next hop that takes
        XFORWARD, so that its log names it, not us (Postfix: orig_client=)."""
        try:
            client = self._client()
        except (smtplib.SMTPException, OSError):
            return UNAVAILABLE
        try:
            if origin:
                _xforward(client, origin)
            return self._transaction(client, mail_from, rcpt_tos, data, archive, smtputf8,
                                     eight_bit, dsn or DsnRequest())
        except (smtplib.SMTPException, OSError, socket.timeout):
            self._drop()
            return UNAVAILABLE

    def verify(self, mail_from: str, rcpt: str) -> str | None:
        """Whether the next hop takes `rcpt` from `mail_from`, asked in a transaction of
        its own that is then reset: None if it does, else the reply for this recipient
        alone (the next hop's refusal, or 451 when it cannot be asked). Upstream hears it
        at RCPT, where it refuses only this recipient; after DATA one reply must stand
        for all of them."""
        try:
            client = self._client()
        except (smtplib.SMTPException, OSError):
            return UNAVAILABLE
        try:
            client.ehlo_or_helo_if_needed()
            self._read_limits(client)
            options, refusal = _mail_options(client, mail_from, [rcpt], None, False)
            if refusal is not None:
                return refusal
            code, message = client.mail(mail_from, options)
            if code == 250:
                code, message = client.rcpt(rcpt)
            if code == 421:  # the next hop is closing this connection
                self._drop()
                return UNAVAILABLE
            client.rset()  # (left open, a transaction with no DATA could outlive us: see decision 0026)
        except (smtplib.SMTPException, OSError, socket.timeout):
            self._drop()
            return UNAVAILABLE
        return None if code in (250, 251) else f"{code} {_text(message)}"

    def _transaction(self, client: smtplib.SMTP, mail_from: str, rcpt_tos: list[str], data: bytes,
                     archive: str, smtputf8: bool, eight_bit: bool, dsn: DsnRequest) -> str:
        """MAIL, every RCPT, then DATA only if the next hop took every recipient."""
        client.ehlo_or_helo_if_needed()
        self._read_limits(client)
        options, refusal = _mail_options(client, mail_from, rcpt_tos, len(data), smtputf8)
        if refusal is not None:
            return refusal
        if eight_bit and client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        with_dsn = client.has_extn("dsn")
        if with_dsn:
            options.extend(dsn.mail)
        elif dsn.wants_success():  # (RFC 3461 4.1 would have us send a "relayed" notice)
            log.info("the next hop does not offer DSN: the sender of mail from <%s> will not "
                     "hear of its delivery", mail_from)
        code, message = client.mail(mail_from, options)
        if code != 250:
            return self._abandon(client, f"{code} {_text(message)}")
        refused: list[tuple[str, int, str]] = []
        for index, rcpt in enumerate(rcpt_tos):
            asked = dsn.for_recipient(index) if with_dsn else ()
            if "SMTPUTF8" not in options:  # (ORCPT=utf-8;... in UTF-8 needs SMTPUTF8 mail, RFC 6533)
                asked = tuple(parameter for parameter in asked if parameter.isascii())
            code, message = client.rcpt(rcpt, list(asked))
            if _out_of_room(code, _text(message), taken=index - len(refused)):
                self._learn_limit(index - len(refused), f"{code} {_text(message)}")
                return self._abandon(client, _over_limit(index - len(refused)))
            if code not in (250, 251):
                refused.append((rcpt, code, _text(message)))
        if refused:
            return self._abandon(client, _refusal(refused, everyone=len(refused) == len(rcpt_tos)))
        if archive and not archive.isascii() and "SMTPUTF8" not in options:
            log.warning("the archive copy to <%s> was not sent: the next hop does not take "
                        "internationalized addresses (SMTPUTF8)", archive)
        elif archive:  # (no notice of the archive copy to a sender who never named it)
            code, message = client.rcpt(archive, ["NOTIFY=NEVER"] if with_dsn else [])
            if _out_of_room(code, _text(message), taken=len(rcpt_tos)):
                self._learn_limit(len(rcpt_tos), f"{code} {_text(message)}")
            if code not in (250, 251):
                log.warning("the next hop refused the archive copy to <%s>: %d %s", archive, code,
                            _text(message))
        try:
            code, message = client.data(data)
        except smtplib.SMTPDataError as error:  # DATA itself refused: nothing was sent
            return self._abandon(client, f"{error.smtp_code} {_text(error.smtp_error)}")
        if code != 250:
            return f"{code} {_text(message)}"
        return "250 2.0.0 Ok: queued by next hop"

    def _abandon(self, client: smtplib.SMTP, reply: str) -> str:
        """End the next hop's transaction before DATA; its connection stays for reuse."""
        if reply.startswith("421"):  # the next hop is closing this connection
            self._drop()
            return UNAVAILABLE
        client.rset()
        return reply


UNAVAILABLE = "451 4.4.1 Next hop unavailable, try again later"


def _xforward(client: smtplib.SMTP, origin: dict[str, str]) -> None:
    """Postfix's XFORWARD (XFORWARD_README), before MAIL: the attributes the next hop
    lists in its EHLO reply, each value in xtext. It sets what the next hop logs, never
    what it allows (that is XCLIENT); the next hop forgets it at the end of the
    transaction. A refusal changes nothing else."""
    client.ehlo_or_helo_if_needed()
    if not client.has_extn("xforward"):
        return
    offered = set(client.esmtp_features.get("xforward", "").upper().split())
    given = [f"{name}={xtext(value)}" for name, value in origin.items() if name in offered and value]
    if given:
        code, message = client.docmd("XFORWARD", " ".join(given))
        if code != 250:
            log.info("the next hop refused XFORWARD: %d %s", code, _text(message))


def _mail_options(client: smtplib.SMTP, mail_from: str, rcpt_tos: list[str], size: int | None,
                  smtputf8: bool) -> tuple[list[str], str | None]:
    """MAIL's parameters for the next hop (SIZE, SMTPUTF8), or the refusal of a message
    whose addresses it cannot take."""
    options = [f"SIZE={size}"] if size is not None and client.has_extn("size") else []
    if not all(address.isascii() for address in (mail_from, *rcpt_tos)):
        if not client.has_extn("smtputf8"):  # (RFC 6531 3.2: the message cannot go on)
            return [], "553 5.6.7 The next hop does not take internationalized addresses (SMTPUTF8)"
        options.append("SMTPUTF8")
    elif smtputf8 and client.has_extn("smtputf8"):
        options.append("SMTPUTF8")  # (UTF-8 in the headers only: it goes on as 8-bit data without)
    return options, None


def _out_of_room(code: int, text: str, taken: int) -> bool:
    """Whether a RCPT reply says the next hop has taken all the recipients it takes in one
    message: 452 with RFC 3463's 4.5.3 ("too many recipients"), after it took `taken`.
    Other 452s (4.3.1, out of storage) are no cap."""
    return code == 452 and taken > 0 and (text.startswith("4.5.3") or "too many recipients" in text.lower())


def _over_limit(limit: int) -> str:
    """The upstream reply for a message with more recipients than the next hop takes."""
    return (f"451 4.5.3 The next hop takes at most {limit} recipients a message; nothing was "
            f"delivered, try again (past {limit}, RCPT will answer 452: send those apart)")


def _refusal(refused: list[tuple[str, int, str]], everyone: bool) -> str:
    """The one upstream reply for a message some of whose recipients the next hop refused."""
    rcpt, code, text = next((r for r in refused if 400 <= r[1] < 500), refused[0])
    if everyone:
        return f"{code} {text}"
    if code < 500:
        return f"451 4.3.0 The next hop deferred <{rcpt}> ({code} {text}); nothing was delivered, try again later"
    return f"{code} {text} (nothing was delivered to the other recipients either)"
