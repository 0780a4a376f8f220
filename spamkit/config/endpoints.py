"""HOST:PORT as the settings and options give it (--listen, --next-hop, MetricsListen,
ReportSmtpServer): one reading for all, so a mistake is caught where it is written,
naming it, and not as an OverflowError when a socket is bound. And host names, as
SmtpHostname, the HELO policy and the DKIM keys take them, and client networks, as
LocalNetworks, RelayClients, WhitelistHosts and spamd's --allowed-ips take them."""

from __future__ import annotations

import ipaddress
import re

_HOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
                        r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*")


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """(host, port) of "host:port", "[v6]:port", and with `default_port` also "host",
    "[v6]" and a bare IPv6 address. ValueError saying what is wrong."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # a name, an IPv4 address, or a bare IPv6 address (whose colons are not a port's)
        host, port = text, None
    if not host or any(c.isspace() or ord(c) < 32 for c in host):
        raise ValueError(f"{text!r} has no host (HOST:PORT, e.g. 127.0.0.1:10025)")
    if port is None:
        if default_port is None:
            raise ValueError(f"{text!r} has no port (HOST:PORT, e.g. 127.0.0.1:10025)")
        return host, default_port
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def endpoint_problem(text: str) -> str | None:
    """For a HOST:PORT setting that may be left empty (off)."""
    return _problem(text, None) if text else None


def socket_endpoint(text: str) -> str | tuple[str, int]:
    """A daemon's socket as socket_problem accepts it: a Unix socket's path (unix:PATH
    gives PATH), else (host, port). ValueError for neither."""
    if text.startswith("/") or text.startswith("unix:"):
        return text.removeprefix("unix:")
    return split_host_port(text)


def socket_problem(text: str) -> str | None:
    """For a daemon's socket: a Unix socket's absolute path (or unix:PATH), else HOST:PORT."""
    if text.startswith("/") or text.startswith("unix:/"):
        return None
    problem = _problem(text, None)
    return problem and f"{problem}; or a Unix socket's absolute path"


def smtp_server_problem(text: str) -> str | None:
    """For host[:port], port 25 if none."""
    return _problem(text, 25)


def server_problem(text: str, default_port: int) -> str | None:
    """For host[:port], `default_port` if none."""
    return _problem(text, default_port)


def _problem(text: str, default_port: int | None) -> str | None:
    try:
        split_host_port(text, default_port)
    except ValueError as error:
        return str(error)
    return None


def is_ip_address(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address as written (no brackets, no prefix)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_host_name(name: str) -> bool:
    """Labels of letters, digits, '-' and '_' (which DNS allows), joined by '.', at most
    253 characters; a final dot allowed. Nothing a path or a record would read otherwise
    ("..", "/", spaces)."""
    name = name.lower().rstrip(".")
    return len(name) <= 253 and _HOST_NAME.fullmatch(name) is not None


def host_name_problem(text: str) -> str | None:
    """For a host-name setting that may be left empty (detected)."""
    if text and not is_host_name(text):
        return f"{text!r} is not a host name (mail.example.org)"
    return None


def client_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of an address ("192.0.2.7"), a network ("10.0.0.0/8",
    "192.168.1.0/255.255.255.0", "2001:db8::/32"), or a prefix of whole IPv4 octets
    ("192.168.1.", "10."): the form of qpsmtpd's relayclients and whitelisthosts files and
    of spamd's --allowed-ips, which an SME administrator carries over. ValueError else."""
    text = text.strip()
    octets = text[:-1].split(".")
    if text.endswith(".") and len(octets) <= 3 and all(octet.isdigit() for octet in octets):
        return ipaddress.IPv4Network(".".join(octets + ["0"] * (4 - len(octets)))
                                     + f"/{8 * len(octets)}")
    return ipaddress.ip_network(text, strict=False)
