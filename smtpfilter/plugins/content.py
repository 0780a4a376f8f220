"""Content checks before scoring: required headers and blocked attachment types."""

from __future__ import annotations

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from smtpfilter.networks import Networks
from spamkit.message import DEFAULT_LIMITS, ParseLimits, parse_message


class Headers(Filter):
    """From: and Date: are required (RFC 5322), except from LocalNetworks (SME's switch)."""

    name = "headers"

    def __init__(self, required: bool, local_networks: list[str]) -> None:
        self.required = required
        self.local = Networks(local_networks)

    def data(self, tx: Transaction) -> Decision:
        if not self.required or tx.peer in self.local:
            return CONTINUE
        head = tx.data.split(b"\r\n\r\n", 1)[0].lower()
        missing = [name for name in (b"from", b"date") if not (head.startswith(name + b":")
                                                               or b"\r\n" + name + b":" in head)]
        if missing:
            names = " and ".join(m.decode().capitalize() for m in missing)
            return reject(self.name, f"550 5.6.0 Message has no {names} header")
        return CONTINUE


class Attachments(Filter):
    name = "attachments"

    def __init__(self, extensions: list[str], limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.extensions = {e.lower().lstrip(".") for e in extensions}
        self.limits = limits

    def data(self, tx: Transaction) -> Decision:
        if not self.extensions:
            return CONTINUE
        message = parse_message(tx.data, self.limits)
        tx.notes["parsed"] = (tx.data, message)  # spamscore scores this parse, not another
        for attachment in message.attachments:
            name = attachment.filename.lower().strip()
            if "." in name and name.rsplit(".", 1)[1] in self.extensions:
                return reject(self.name, f"552 5.7.0 Attachments of type .{name.rsplit('.', 1)[1]} "
                                         "are not accepted")
        return CONTINUE

