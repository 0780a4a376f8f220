"""TLS on `spamkit serve`: what a session costs in plaintext, with STARTTLS and with TLS
from the first byte (`--listen-tls`), and what clients that never finish a handshake can
hold (`python3 -m benchmarks.smtp_tls`; decision 0033).

- Sessions: --sessions sessions of one 5,000-byte message each, from --threads clients at
  once, to `serve` (scoring off: what is measured is the session, not the message) in
  front of Postfix's smtp-sink, and straight to smtp-sink for the floor; sessions a second
  and the filter's CPU time a session.
- Half-open handshakes: --silent connections from one address to the TLS port that never
  say a word (MaxSessions 100, MaxSessionsPerClient 10, every client a stranger); how
  many `serve` holds and how many it closes at once, and whether a real client from
  another address gets in meanwhile; the same against aiosmtpd's own way to serve TLS
  from the first byte (its Controller's ssl_context). Both servers with the limit on open
  files a systemd service gets (1024).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.smtp_load import _cpu_seconds, _sink
from tests.servers.net import free_port, listening, self_signed_certificate, wait_for_port
from tests.servers.serve import start_serve, stop_serve

MESSAGE = (b"From: a@example.org\r\nTo: rcpt@example.org\r\nSubject: tls\r\n\r\n"
           + b"filler line of a message of about five thousand bytes for the session test\r\n" * 66)


def _sessions(connect: Callable[[str], smtplib.SMTP], count: int, threads: int) -> tuple[float, int]:
    """(seconds, messages accepted) for `count` sessions of one message, `threads` at once,
    each client from an address of its own (127.0.0.10 on); `connect(address)` gives a
    session ready for MAIL."""
    accepted = [0] * threads
    per_thread = count // threads
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(per_thread):
                with connect(f"127.0.0.{10 + index}") as client:
                    client.sendmail("a@example.org", ["rcpt@example.org"], MESSAGE)
                    accepted[index] += 1
        except Exception as error:  # (raised again below: a refused session is no figure)
            errors.append(error)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {threads} clients failed: {errors[0]!r}")
    return time.perf_counter() - started, sum(accepted)


def _plain(port: int) -> Callable[[str], smtplib.SMTP]:
    def connect(source: str) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0))
        client.ehlo("client.example.org")
        return client
    return connect


def _starttls(port: int, context: ssl.SSLContext) -> Callable[[str], smtplib.SMTP]:
    def connect(source: str) -> smtplib.SMTP:
        client = _plain(port)(source)
        client.starttls(context=context)
        client.ehlo("client.example.org")
        return client
    return connect


def _implicit(port: int, context: ssl.SSLContext) -> Callable[[str], smtplib.SMTP]:
    def connect(source: str) -> smtplib.SMTP:
        client = smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=60,
                                  source_address=(source, 0))
        client.ehlo("client.example.org")
        return client
    return connect


def _half_open(port: int, silent: int, context: ssl.SSLContext) -> tuple[int, int, int, str]:
    """(held, closed at once, not let connect, what a real TLS client from another address
    got) with `silent` connections from 127.0.0.1 that never send a byte opened against
    `port`."""
    sockets, unconnected = [], 0
    for _ in range(silent):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            unconnected += 1  # (the server no longer accepts: its listen queue is full)
    time.sleep(1.0)
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass  # still open, waiting for a handshake
        except OSError:
            closed += 1
    try:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=5,
                              source_address=("127.0.0.2", 0)) as client:
            outcome = f"{client.ehlo('client.example.org')[0]} to EHLO"
    except (OSError, smtplib.SMTPException) as error:
        outcome = f"no session ({type(error).__name__})"
    for sock in sockets:
        sock.close()
    return len(sockets) - closed, closed, unconnected, outcome


SERVICE_FILES = 1024  # the soft limit on open files a systemd service gets (LimitNOFILE)


def _as_a_service() -> None:
    """This process's soft limit on open files as a service has it; the servers started
    from now on inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVICE_FILES, hard))


def _room_for_clients(silent: int) -> None:
    """This process's soft limit raised again, for its own `silent` client sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, silent + 500), hard))


@contextlib.contextmanager
def _aiosmtpd_tls(certificate: Path, key: Path) -> Iterator[int]:
    """aiosmtpd's own implicit TLS (its Controller with an ssl_context, a handler that
    takes every message), in a process of its own with a service's limit on open files."""
    port = free_port()
    with listening([sys.executable, "-m", "benchmarks.smtp_tls", "--aiosmtpd-server", str(port),
                    str(certificate), str(key)], port):
        yield port


def _serve_with_aiosmtpd(port: int, certificate: str, key: str) -> None:
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    _as_a_service()
    controller = Controller(Accept(), hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    threading.Event().wait()


def report(sessions: int, threads: int, silent: int) -> str:
    _as_a_service()  # (for the servers started below)
    work = Path(tempfile.mkdtemp(prefix="spamkit-tls-"))
    work.chmod(0o755)
    certificate, key = self_signed_certificate(work)
    context = ssl.create_default_context(cafile=str(certificate))
    config = work / "spamkit.toml"
    config.write_text(f'UseBayes = false\nLocalDomains = ["example.org"]\nRequireHeaders = false\n'
                      f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\nMaxSessions = 100\n'
                      # (every client a stranger, as on a server facing the Internet: the
                      # per-client limit, MaxSessionsPerClient 10, applies to each)
                      'LocalNetworks = []\nRelayClients = []\n'
                      # (and no DNS checks: the session's cost is what is measured)
                      'SmtpFilters = ["relay"]\n')
    (work / "direct").mkdir()
    (work / "filtered").mkdir()
    rows = []
    with contextlib.ExitStack() as running:
        direct = running.enter_context(_sink(work / "direct"))
        next_hop = running.enter_context(_sink(work / "filtered"))
        tls_port = free_port()
        process, port = start_serve(next_hop, work / "db", config, "--listen-tls", f"127.0.0.1:{tls_port}",
                                    stderr=subprocess.DEVNULL)  # (a line a message: a pipe would fill)
        running.callback(stop_serve, process)
        wait_for_port(tls_port)
        _room_for_clients(silent)
        for name, connect, measured in (
                ("smtp-sink, plaintext (the floor)", _plain(direct), False),
                ("serve, plaintext", _plain(port), True),
                ("serve, STARTTLS", _starttls(port, context), True),
                ("serve, TLS from the first byte (--listen-tls)", _implicit(tls_port, context), True)):
            cpu = _cpu_seconds(process.pid)
            seconds, accepted = _sessions(connect, sessions, threads)
            used = _cpu_seconds(process.pid) - cpu
            per_session = f"{used / accepted * 1000:.2f}" if measured else "-"
            rows.append(f"| {name} | {accepted} | {seconds:.2f} | {accepted / seconds:,.0f} | {per_session} |")
        held, closed, unconnected, outcome = _half_open(tls_port, silent, context)
    _as_a_service()
    with _aiosmtpd_tls(certificate, key) as plain_aiosmtpd:
        _room_for_clients(silent)
        a_held, a_closed, a_unconnected, a_outcome = _half_open(plain_aiosmtpd, silent, context)
    lines = [f"| path ({sessions} sessions of one {len(MESSAGE):,}-byte message, {threads} at once) | "
             "accepted | seconds | sessions/s | filter CPU ms a session |",
             "|---|---:|---:|---:|---:|", *rows, "",
             f"| {silent} connections that never start their handshake (each server: "
             f"{SERVICE_FILES} open files, as a systemd service) | held | closed at once | "
             "could not connect | a real client meanwhile |", "|---|---:|---:|---:|---|",
             f"| spamkit serve --listen-tls (MaxSessions 100, MaxSessionsPerClient 10) | {held} | {closed} | {unconnected} | {outcome} |",
             f"| aiosmtpd Controller(ssl_context=...) | {a_held} | {a_closed} | {a_unconnected} | "
             f"{a_outcome} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=800)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--silent", type=int, default=1200)
    parser.add_argument("--aiosmtpd-server", nargs=3, metavar=("PORT", "CERTIFICATE", "KEY"),
                        help=argparse.SUPPRESS)  # (the comparison's server process)
    arguments = parser.parse_args()
    if arguments.aiosmtpd_server:
        port_text, certificate_path, key_path = arguments.aiosmtpd_server
        _serve_with_aiosmtpd(int(port_text), certificate_path, key_path)
    else:
        print(report(arguments.sessions, arguments.threads, arguments.silent))
