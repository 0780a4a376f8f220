"""SMTP AUTH on `spamkit serve` against a real Dovecot: what a login costs, and how many
passwords a client can try (`python3 -m benchmarks.smtp_auth`; decision 0032).

A real Dovecot 2.3 (tests/servers/dovecot.py) on loopback checks the passwords; `serve`
runs as its users run it, with STARTTLS and SmtpAuthentication on. Printed:
- the time of AUTH PLAIN with the right password, and with a wrong one (each from an
  address of its own, so that Dovecot's per-address penalty does not grow);
- how many wrong passwords one client address gets answered in --seconds, one session
  at a time and with --parallel sessions at once (which MaxSessionsPerClient caps).
"""

from __future__ import annotations

import argparse
import base64
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tests.servers.dovecot import start_dovecot
from tests.servers.net import self_signed_certificate
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import start_sink


def _credentials(login: str, password: str) -> bytes:
    return base64.b64encode(f"\0{login}\0{password}".encode())


def _session(port: int, source: str, certificate: Path) -> Client:
    client = Client(port, source)
    client.reply()
    client.command(b"EHLO laptop.example.com")
    client.command(b"STARTTLS")
    client.sock = ssl.create_default_context(cafile=str(certificate)).wrap_socket(
        client.sock, server_hostname="localhost")
    client.buffer = b""
    client.command(b"EHLO laptop.example.com")
    return client


def _timed_login(port: int, source: str, certificate: Path, password: str) -> tuple[float, bytes]:
    client = _session(port, source, certificate)
    started = time.perf_counter()
    reply = client.command(b"AUTH PLAIN " + _credentials("alice", password))
    elapsed = time.perf_counter() - started
    client.sock.close()
    return elapsed, reply


def _guess_for(port: int, source: str, certificate: Path, until: float, replies: list[bytes]) -> None:
    """Wrong passwords, session after session, until `until`; each reply kept."""
    guess = 0
    while time.monotonic() < until:
        try:
            client = _session(port, source, certificate)
        except (OSError, ConnectionError):
            time.sleep(0.1)  # (turned away by MaxSessionsPerClient: try again)
            continue
        try:
            while time.monotonic() < until:
                guess += 1
                reply = client.command(b"AUTH PLAIN " + _credentials("alice", f"guess-{source}-{guess}"))
                replies.append(reply[:3])
                if not reply.startswith(b"535"):
                    break
        except (OSError, ConnectionError):
            pass
        finally:
            client.sock.close()


def guesses(port: int, source: str, certificate: Path, seconds: float, parallel: int) -> dict[bytes, int]:
    """The replies to `parallel` clients guessing from `source` for `seconds`, by code."""
    until = time.monotonic() + seconds
    replies: list[bytes] = []
    threads = [threading.Thread(target=_guess_for, args=(port, source, certificate, until, replies))
               for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {code: replies.count(code) for code in sorted(set(replies))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200, help="right-password logins timed")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each guessing run lasts")
    parser.add_argument("--parallel", type=int, default=8, help="sessions at once in the second run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spamkit-auth-bench-"))
    certificate, key = self_signed_certificate(work)
    for dovecot in start_dovecot():
        for sink in start_sink():
            config = work / "spamkit.toml"
            config.write_text(
                'UseBayes = false\nLocalNetworks = []\nRelayClients = []\nLocalDomains = ["example.org"]\n'
                'SmtpFilters = ["relay"]\nSmtpAuthentication = true\n'
                f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n'
                f'DovecotAuthAddress = "{dovecot.auth_socket}"\nMaxSessionsPerClient = 20\n')
            process, port = start_serve(sink.port, work / "db", config)
            try:
                right = [_timed_login(port, "127.0.0.1", certificate, "secret") for _ in range(args.logins)]
                assert all(reply.startswith(b"235") for _, reply in right), right[:3]
                wrong = [_timed_login(port, f"127.0.2.{n}", certificate, "wrong") for n in range(1, 11)]
                assert all(reply.startswith(b"535") for _, reply in wrong), wrong[:3]
                serial = guesses(port, "127.0.3.1", certificate, args.seconds, 1)
                parallel = guesses(port, "127.0.3.2", certificate, args.seconds, args.parallel)
            finally:
                stop_serve(process)
    ok_ms = sorted(seconds * 1000 for seconds, _ in right)
    bad_ms = sorted(seconds * 1000 for seconds, _ in wrong)
    print(f"| what | figure |\n|---|---:|\n"
          f"| AUTH PLAIN, right password ({len(ok_ms)} logins): median / p99 | "
          f"{statistics.median(ok_ms):.1f} / {ok_ms[int(len(ok_ms) * 0.99) - 1]:.1f} ms |\n"
          f"| AUTH PLAIN, wrong password (10, each from its own address): median / max | "
          f"{statistics.median(bad_ms):.0f} / {max(bad_ms):.0f} ms |")
    for label, counts in ((f"one session at a time, {args.seconds:g} s", serial),
                          (f"{args.parallel} sessions at once, {args.seconds:g} s", parallel)):
        tried = sum(counts.values())
        shown = ", ".join(f"{code.decode()}: {n}" for code, n in counts.items())
        print(f"| wrong passwords answered from one address, {label} | {tried} ({shown}) |")


if __name__ == "__main__":
    main()
