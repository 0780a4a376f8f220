"""Hand a message to the next hop; the upstream reply is the next hop's reply.

A next hop that is down, slow or broken gives 451: the sender keeps the message and
tries again. A 4xx or 5xx from the next hop is passed back as it came.
"""

from __future__ import annotations

import smtplib
import socket
import threading

RELAY_TIMEOUT = 60.0  # below Postfix's 100 s smtpd_proxy_timeout


def _text(message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return " ".join(text.split())


class RelayPool:
    """Relay over kept-open connections, one a worker thread, checked with RSET before use.

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

    def _client(self) -> smtplib.SMTP:
        client: smtplib.SMTP | None = getattr(self._local, "client", None)
        if client is not None:
            try:
                client.rset()
                return client
            except (smtplib.SMTPException, OSError):
                self._drop()
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        self._local.client = client
        return client

    def _drop(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except OSError:
                pass

    def send(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> str:
        try:
            client = self._client()
        except (smtplib.SMTPException, OSError):
            return "451 4.4.1 Next hop unavailable, try again later"
        try:
            refused = client.sendmail(mail_from, rcpt_tos, data)
        except smtplib.SMTPRecipientsRefused as error:
            code, message = next(iter(error.recipients.values()))
            return f"{code} {_text(message)}"
        except smtplib.SMTPSenderRefused as error:
            return f"{error.smtp_code} {_text(error.smtp_error)}"
        except smtplib.SMTPDataError as error:
            return f"{error.smtp_code} {_text(error.smtp_error)}"
        except (smtplib.SMTPException, OSError, socket.timeout):
            self._drop()
            return "451 4.4.1 Next hop unavailable, try again later"
        if refused:  # some recipients refused: the accepted ones have the message
            return "250 2.0.0 Accepted for some recipients"
        return "250 2.0.0 Ok: queued by next hop"
