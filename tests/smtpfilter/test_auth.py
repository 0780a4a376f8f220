"""SMTP AUTH against a real Dovecot's auth service (tests/servers/dovecot.py): users who
log in may relay and are spared the checks for strangers; wrong passwords, a Dovecot that
is down or silent, and clients that keep guessing are answered as RFC 4954 says."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smtpfilter import auth
from smtpfilter.archive import ArchiveCopy
from smtpfilter.auth import LoginFailures, configured_auth
from smtpfilter.chain import FilterChain
from smtpfilter.filter import Action, Transaction
from smtpfilter.dovecot_auth import DovecotAuth, unescape
from smtpfilter.limits import LimitedController, SessionLimits
from smtpfilter.metrics import Metrics
from smtpfilter.networks import LocalClients
from smtpfilter.plugins import build_filters
from smtpfilter.plugins.senderlogin import SenderLogin
from smtpfilter.plugins.sendlimit import WINDOW, SendCounts
from smtpfilter.server import FilterHandler
from smtpfilter.trace import Trace
from smtpfilter.tls import server_context
from spamkit.config import config_from_text
from spamkit.verdict import Scanner
from tests.servers.dovecot import MASTER_PASSWORD, MASTER_USER, Dovecot, start_dovecot
from tests.servers.net import self_signed_certificate
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import Sink, free_port
from tests.servers.swaks import swaks
from tests.smtpfilter.conftest import PLAIN, STRANGER


def plain(login: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode())


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    yield from start_dovecot()


@dataclass
class AuthServer:
    port: int
    metrics: Metrics
    certificate: Path
    tls_port: int  # TLS from the first byte (serve --listen-tls)
    submission_port: int  # logins before MAIL (serve --listen-submission)

    def client(self, source: str = "127.0.0.1") -> Client:
        client = Client(self.port, source)
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO laptop.example.com").startswith(b"250")
        return client

    def secure(self, client: Client) -> Client:
        """STARTTLS on `client`'s session, and EHLO again."""
        assert client.command(b"STARTTLS").startswith(b"220")
        client.sock = ssl.create_default_context(cafile=str(self.certificate)).wrap_socket(
            client.sock, server_hostname="localhost")
        client.buffer = b""
        assert b"AUTH LOGIN PLAIN" in client.command(b"EHLO laptop.example.com")
        return client


@pytest.fixture
def auth_server(dovecot: Dovecot, sink: Sink, tmp_path: Path) -> Iterator[Callable[..., AuthServer]]:
    """start(settings) -> an in-process filter for strangers (no LocalNetworks, no
    RelayClients; LocalDomains example.org) with STARTTLS and SMTP AUTH on, asking the
    fixture's Dovecot, and the envelope and headers checks, unless the settings say
    otherwise."""
    controllers = []
    certificate, key = self_signed_certificate(tmp_path)

    def start(settings: str = "") -> AuthServer:
        stranger = STRANGER if "LocalNetworks" not in settings else 'LocalDomains = ["example.org"]\n'
        text = (f'UseBayes = false\n{stranger}'
                f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n'
                f'DmarcReportDatabase = "{tmp_path / "dmarc.sqlite"}"\n')
        if "SmtpFilters" not in settings:  # (the default chain's DNS checks would ask the world)
            text += 'SmtpFilters = ["relay", "badmailfrom", "badrcptto", "badhelo", "helo", "headers"]\n'
        if "SmtpAuthentication" not in settings:
            text += "SmtpAuthentication = true\n"
        if "DovecotAuthAddress" not in settings:
            text += f'DovecotAuthAddress = "{dovecot.auth_socket}"\n'
        config = config_from_text(text + settings, tmp_path / "spamkit.toml", {})
        metrics = Metrics()
        handler = FilterHandler(FilterChain(build_filters(config, Scanner.from_config(config, None), False)),
                                ("127.0.0.1", sink.port), ArchiveCopy.configured(config), metrics, verify_recipients=False,
                                trace=Trace(None, "mx.example.org"), auth=configured_auth(config, metrics))
        port, tls_port, submission_port = free_port(), free_port(), free_port()
        controller = LimitedController(
            handler, SessionLimits(), hostname="127.0.0.1", port=port, auth_require_tls=config["TlsBeforeAuth"],
            tls_context=server_context(config["TlsCertificate"], config["TlsKey"], config.origins),
            require_starttls=False, tls_listen=("127.0.0.1", tls_port),
            submission_listen=("127.0.0.1", submission_port),
            tls_login_required=config["ImplicitTlsLoginRequired"])
        controller.start()
        controllers.append(controller)
        return AuthServer(port, metrics, certificate, tls_port, submission_port)

    yield start
    for controller in controllers:
        controller.stop()


def send(client: Client, sender: str, recipient: str, data: bytes = PLAIN) -> bytes:
    """One message on an open session: the reply to its end, or the first refusal."""
    for command in (b"MAIL FROM:<" + sender.encode() + b">", b"RCPT TO:<" + recipient.encode() + b">"):
        reply = client.command(command)
        if not reply.startswith(b"250"):
            return reply
    assert client.command(b"DATA").startswith(b"354")
    return client.command(data + b".")


def test_a_user_who_logs_in_may_relay_and_a_stranger_may_not(
        auth_server: Callable[..., AuthServer], sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    server = auth_server()
    stranger = server.client()
    assert send(stranger, "alice@example.org", "friend@elsewhere.example").startswith(b"554 5.7.1 Relay")
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        user = server.secure(server.client())
        assert user.command(b"AUTH PLAIN " + plain("alice", "secret")) == b"235 2.7.0 Authentication successful"
        assert send(user, "alice@example.org", "friend@elsewhere.example").startswith(b"250")
    [relayed] = sink.messages()
    assert b"X-Rcpt-Args: <friend@elsewhere.example>" in relayed
    received = sink.messages_as_sent()[0].split(b"\nFrom: ")[0]
    assert received.startswith(b"Received: from laptop.example.com (localhost [127.0.0.1])")
    assert b"with ESMTPSA id" in received and b"alice" not in received  # RFC 3848; the user only logged
    assert "client=127.0.0.1 auth=ok user=alice method=PLAIN" in caplog.text
    assert "user=alice" in caplog.records[-1].getMessage()  # on the message's own log line
    assert server.metrics.logins.counts() == {("ok",): 1}
    assert 'spamkit_smtp_auth_total{outcome="ok"} 1' in server.metrics.exposition()


def test_every_way_a_mail_program_logs_in(auth_server: Callable[..., AuthServer], dovecot: Dovecot) -> None:
    server = auth_server()
    login, password = base64.b64encode(b"bob"), base64.b64encode(b"secret2")
    # PLAIN after an empty challenge
    client = server.secure(server.client())
    assert client.command(b"AUTH PLAIN") == b"334 "
    assert client.command(plain("bob", "secret2")).startswith(b"235")
    # LOGIN asked for both, and with the name given
    client = server.secure(server.client())
    assert client.command(b"AUTH LOGIN") == b"334 " + base64.b64encode(b"Username:")
    assert client.command(login) == b"334 " + base64.b64encode(b"Password:")
    assert client.command(password).startswith(b"235")
    assert client.command(b"AUTH LOGIN " + login).startswith(b"503")  # once a session
    client = server.secure(server.client())
    assert client.command(b"AUTH login " + login).startswith(b"334")
    assert client.command(password).startswith(b"235")
    # a master user acting as another: Dovecot names who it is logged in as
    client = server.secure(server.client())
    assert client.command(b"AUTH PLAIN " + plain(MASTER_USER, MASTER_PASSWORD, "carol")).startswith(b"235")
    # swaks, as a user would test the server
    message = dovecot.root / "auth-test.eml"
    message.write_bytes(PLAIN)
    for mechanism in ("PLAIN", "LOGIN"):
        reply = swaks(server.port, message, "bob@example.org", "friend@elsewhere.example",
                      extra=("--tls", "--auth", mechanism, "--auth-user", "bob", "--auth-password", "secret2"))
        assert reply.startswith("250"), reply


def test_logins_on_the_port_that_is_tls_from_the_first_byte(
        auth_server: Callable[..., AuthServer], sink: Sink, dovecot: Dovecot) -> None:
    """SME's users on "SSL" port 465: AUTH is offered at once, TlsBeforeAuth being met."""
    server = auth_server()
    client = Client(server.tls_port)
    client.sock = ssl.create_default_context(cafile=str(server.certificate)).wrap_socket(
        client.sock, server_hostname="localhost")
    assert client.reply().startswith(b"220")
    features = client.command(b"EHLO laptop.example.com")
    assert b"AUTH LOGIN PLAIN" in features and b"STARTTLS" not in features
    listed = client.command(b"HELP")  # (as EHLO: AUTH, and no STARTTLS on a port that is TLS)
    assert b" AUTH " in listed and b"STARTTLS" not in listed
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    assert send(client, "alice@example.org", "friend@elsewhere.example").startswith(b"250")
    received = sink.messages_as_sent()[0].split(b"\nFrom: ")[0]
    assert b"with ESMTPSA id" in received
    message = dovecot.root / "auth-test-465.eml"
    message.write_bytes(PLAIN)
    reply = swaks(server.tls_port, message, "bob@example.org", "friend@elsewhere.example",
                  extra=("--tlsc", "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", "secret2"))
    assert reply.startswith("250"), reply
    assert server.metrics.tls.counts() == {("implicit", "ok"): 2}


def test_the_submission_port_takes_mail_only_after_a_login(
        auth_server: Callable[..., AuthServer], sink: Sink, dovecot: Dovecot,
        caplog: pytest.LogCaptureFixture) -> None:
    """Port 587 (RFC 6409): STARTTLS, AUTH, then mail. MAIL before a login hears 530,
    from our own network too (a printer that cannot log in uses port 25), and the
    refusal is logged; port 25 goes on taking strangers' mail for our users."""
    server = auth_server('LocalNetworks = ["127.0.0.0/8"]\nRelayClients = ["127.0.0.1"]\n')
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        client = Client(server.submission_port)
        assert client.reply().startswith(b"220")
        features = client.command(b"EHLO laptop.example.com")
        assert b"STARTTLS" in features and b"AUTH" not in features  # (TlsBeforeAuth)
        refused = client.command(b"MAIL FROM:<alice@example.org>")
        assert refused.startswith(b"530 5.7.0 Authentication required")
        server.secure(client)
        assert client.command(b"MAIL FROM:<alice@example.org>").startswith(b"530")
        assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
        assert send(client, "alice@example.org", "friend@elsewhere.example").startswith(b"250")
        client.command(b"QUIT")
    assert "client=127.0.0.1 helo=laptop.example.com from=<alice@example.org> rcpt=- stage=mail " \
           "reply='530' by=submission" in caplog.text
    message = dovecot.root / "auth-test-587.eml"
    message.write_bytes(PLAIN)
    reply = swaks(server.submission_port, message, "bob@example.org", "friend@elsewhere.example",
                  extra=("--tls", "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", "secret2"))
    assert reply.startswith("250"), reply
    unauthenticated = swaks(server.submission_port, message, "a@example.net", "b@example.org", extra=("--tls",))
    assert unauthenticated.startswith("530"), unauthenticated
    assert swaks(server.port, message, "a@example.net", "b@example.org").startswith("250")
    assert len(sink.messages()) == 3


def test_port_465_as_a_submission_port_when_asked(auth_server: Callable[..., AuthServer], sink: Sink) -> None:
    """ImplicitTlsLoginRequired: port 465 (RFC 8314's submissions) takes only logged-in
    users' mail, as 587 does; without it (SME's way, and the default) it takes what
    port 25 takes (test_implicit_tls)."""
    server = auth_server("ImplicitTlsLoginRequired = true\n")
    client = Client(server.tls_port)
    client.sock = ssl.create_default_context(cafile=str(server.certificate)).wrap_socket(
        client.sock, server_hostname="localhost")
    assert client.reply().startswith(b"220")
    assert b"AUTH LOGIN PLAIN" in client.command(b"EHLO laptop.example.com")
    assert client.command(b"MAIL FROM:<a@example.net>").startswith(b"530 5.7.0 Authentication required")
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    assert send(client, "alice@example.org", "friend@elsewhere.example").startswith(b"250")
    client.command(b"QUIT")
    plain_port = Client(server.port)  # (port 25 is not touched by it)
    assert plain_port.reply().startswith(b"220")
    plain_port.command(b"EHLO mx.example.net")
    assert send(plain_port, "a@example.net", "b@example.org").startswith(b"250")
    assert len(sink.messages()) == 2


def test_a_refusal_on_the_submission_port_is_not_held_against_the_client(
        auth_server: Callable[..., AuthServer], tmp_path: Path) -> None:
    """A mail program set up without its login hears 530 at each try; karma, which counts
    a stranger's refusals against its address (an office's whole NAT address), hears
    nothing of them."""
    karma = tmp_path / "karma"
    server = auth_server(f'SmtpFilters = ["relay", "karma"]\nKarmaDatabase = "{karma}"\n')
    for _ in range(3):
        client = Client(server.submission_port)
        assert client.reply().startswith(b"220")
        client.command(b"EHLO laptop.example.com")
        assert client.command(b"MAIL FROM:<alice@example.org>").startswith(b"530")
        client.command(b"QUIT")
    stranger = Client(server.port)  # (port 25: the same refusal policy would count there)
    assert stranger.reply().startswith(b"220")
    stranger.command(b"EHLO laptop.example.com")
    stranger.command(b"MAIL FROM:<a@example.net>")
    assert stranger.command(b"RCPT TO:<b@elsewhere.example>").startswith(b"5")
    stranger.command(b"QUIT")
    config = tmp_path / "karma.toml"  # (read from another process, as an administrator reads it)
    config.write_text(f'KarmaDatabase = "{karma}"\n')
    listed = subprocess.run([sys.executable, "-m", "spamkit", "karma", "list", "--json", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert [(row["address"], row["bad"]) for row in json.loads(listed)["addresses"]] == [("127.0.0.1", 1)]


def test_wrong_passwords_and_clients_that_keep_guessing(
        auth_server: Callable[..., AuthServer], caplog: pytest.LogCaptureFixture) -> None:
    server = auth_server()
    # (each its own address: Dovecot's penalty grows for an address that keeps failing)
    client = server.secure(server.client("127.0.0.21"))
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        started = time.monotonic()
        assert client.command(b"AUTH PLAIN " + plain("alice", "wrong")) == \
            b"535 5.7.8 Authentication credentials invalid"
        assert time.monotonic() - started > 1  # Dovecot's auth_failure_delay, not ours
        assert client.command(b"AUTH PLAIN " + plain("nobody-here", "x")).startswith(b"535")
        assert send(client, "alice@example.org", "friend@elsewhere.example").startswith(b"554")
        assert client.command(b"RSET").startswith(b"250")
        # the third failure ends the session
        assert client.command(b"AUTH PLAIN " + plain("alice", "guess")) == \
            b"421 4.7.0 Too many failed authentications, closing the session"
        with pytest.raises((ConnectionError, OSError)):
            client.command(b"NOOP")
    failures = [r.getMessage() for r in caplog.records if "auth=failed" in r.getMessage()]
    assert failures == [f"client=127.0.0.21 auth=failed user={user} method=PLAIN failures={n}"
                        for n, user in ((1, "alice"), (2, "nobody-here"), (3, "alice"))]
    assert server.metrics.logins.counts() == {("failed",): 3}
    # answers that are not credentials
    client = server.secure(server.client("127.0.0.22"))
    assert client.command(b"AUTH PLAIN").startswith(b"334")
    assert client.command(b"*").startswith(b"501")  # the client gave up
    assert client.command(b"AUTH PLAIN !!notbase64").startswith(b"501")
    assert client.command(b"AUTH PLAIN " + base64.b64encode(b"no-nul-here")).startswith(b"501")
    assert client.command(b"AUTH PLAIN " + plain("alice\0x", "secret")).startswith(b"501")
    assert client.command(b"AUTH CRAM-MD5").startswith(b"504")
    # not in the middle of a transaction (RFC 4954 4)
    assert client.command(b"MAIL FROM:<alice@example.org>").startswith(b"250")
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"503 5.5.1")
    assert client.command(b"RSET").startswith(b"250")
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")


def test_passwords_only_over_tls_unless_told_otherwise(auth_server: Callable[..., AuthServer]) -> None:
    server = auth_server()
    client = Client(server.port)
    assert client.reply().startswith(b"220")
    assert b"AUTH" not in client.command(b"EHLO laptop.example.com")
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"538 5.7.11")
    server.secure(client)  # (which checks that AUTH is offered once encrypted)
    plain_server = auth_server("TlsBeforeAuth = false\n")
    client = plain_server.client()
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")


def test_authentication_off_takes_no_login(auth_server: Callable[..., AuthServer]) -> None:
    server = auth_server("SmtpAuthentication = false\n")
    client = server.client()
    assert client.command(b"STARTTLS").startswith(b"220")
    client.sock = ssl.create_default_context(cafile=str(server.certificate)).wrap_socket(
        client.sock, server_hostname="localhost")
    client.buffer = b""
    assert b"AUTH" not in client.command(b"EHLO laptop.example.com")  # (aiosmtpd's own is hidden)
    assert client.command(b"AUTH PLAIN " + plain("alice", "secret")) == \
        b"502 5.5.1 Authentication is not offered here; use the submission port"


def test_a_logged_in_user_is_spared_the_checks_for_strangers(
        auth_server: Callable[..., AuthServer], sink: Sink) -> None:
    """qpsmtpd makes an authenticated connection a relay client: a user on a hotel's
    network, whose laptop says HELO with a bare name, is not a stranger."""
    server = auth_server('SmtpFilters = ["relay", "badhelo", "helo", "badmailfrom"]\nBadHelo = ["laptop*"]\n'
                         'BadMailFrom = ["@example.org"]\n')
    stranger = server.secure(server.client())
    assert send(stranger, "alice@example.org", "user@example.org").startswith(b"550")
    user = server.secure(server.client())
    assert user.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    assert send(user, "alice@example.org", "user@example.org").startswith(b"250")
    assert send(user, "alice@example.org", "friend@elsewhere.example").startswith(b"250")
    assert len(sink.messages()) == 2


def test_senderlogin_lets_a_user_send_only_as_an_address_of_theirs(
        auth_server: Callable[..., AuthServer], sink: Sink, dovecot: Dovecot,
        caplog: pytest.LogCaptureFixture) -> None:
    """Postfix's reject_sender_login_mismatch: one user's password does not let a client
    send as another user, nor as someone elsewhere. A login owns LOGIN@ our domains, and
    SenderLogins gives it a pseudonym and shared addresses; the null sender passes, and a
    client that did not log in is not this filter's to judge."""
    server = auth_server('SmtpFilters = ["relay", "senderlogin"]\n'
                         'SenderLogins = ["john.smith alice", "sales@example.org alice bob", '
                         '"@example.com carol", "info-* bob"]\n')
    alice = server.secure(server.client())
    assert alice.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        assert send(alice, "bob@example.org", "friend@elsewhere.example") == \
            b"553 5.7.1 Sender address rejected: not owned by user alice"
    assert "from=<bob@example.org> rcpt=- stage=mail reply='553' by=senderlogin user=alice" in caplog.text
    for refused in ("alice@elsewhere.example", "alice@sub.example.org", "john.smith@elsewhere.example",
                    "info-desk@example.org", "someone@example.com"):
        assert send(alice, refused, "friend@elsewhere.example").startswith(b"553 5.7.1"), refused
    for sender in ("alice@example.org", "Alice@EXAMPLE.org", "john.smith@example.org", "sales@example.org", ""):
        assert send(alice, sender, "friend@elsewhere.example").startswith(b"250"), sender
    bob = server.secure(server.client())
    assert bob.command(b"AUTH PLAIN " + plain("bob", "secret2")).startswith(b"235")
    assert send(bob, "john.smith@example.org", "friend@elsewhere.example").startswith(b"553")
    for sender in ("sales@example.org", "info-desk@example.org", "bob@example.org"):
        assert send(bob, sender, "friend@elsewhere.example").startswith(b"250"), sender
    # a master user acting as carol is carol, as Dovecot names who logged in
    carol = server.secure(server.client())
    assert carol.command(b"AUTH PLAIN " + plain(MASTER_USER, MASTER_PASSWORD, "carol")).startswith(b"235")
    assert send(carol, f"{MASTER_USER}@example.org", "friend@elsewhere.example").startswith(b"553")
    assert send(carol, "anyone@example.com", "friend@elsewhere.example").startswith(b"250")
    # not logged in: a stranger's mail to us is for the other checks (BadMailFrom, SPF, DMARC)
    assert send(server.client(), "bob@example.org", "alice@example.org").startswith(b"250")
    assert len(sink.messages()) == 10
    assert server.metrics.refusals.counts() == {("senderlogin",): 8}
    # as a user would test it
    message = dovecot.root / "senderlogin-test.eml"
    message.write_bytes(PLAIN)
    reply = swaks(server.port, message, "alice@example.org", "friend@elsewhere.example",
                  extra=("--tls", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "secret2"))
    assert "553 5.7.1 Sender address rejected: not owned by user bob" in reply, reply


def test_whose_address_is_whose(tmp_path: Path) -> None:
    """senderlogin's ownership over several domains, an international one among them
    (compared as DNS carries it), for a login that is itself an address; a bad
    SenderLogins entry names its line, and lint says when the filter has nothing to do."""
    owner = SenderLogin(["example.org", "Bücher.example"], ["sales alice", "@shared.example bob",
                                                          "*@*.example.org carol", "x@bücher.example bob"])
    assert owner.owns("alice", "alice@example.org") and owner.owns("alice", "alice@xn--bcher-kva.example")
    assert owner.owns("alice", "ALICE@BÜCHER.example") and owner.owns("alice", "sales@bücher.example")
    assert not owner.owns("alice", "alice@example.net") and not owner.owns("bob", "sales@example.org")
    assert owner.owns("bob", "anyone@shared.example") and not owner.owns("bob", "anyone@sub.shared.example")
    assert owner.owns("bob", "x@xn--bcher-kva.example") and not owner.owns("alice", "x@bücher.example")
    assert owner.owns("carol", "c@mail.example.org") and not owner.owns("carol", "c@example.net")
    assert not owner.owns("carol", "c@example.org.evil.example")
    # a login that is an address (Dovecot set up with auth_username_format %Lu) owns just it
    assert owner.owns("dave@example.net", "Dave@example.net")
    assert not owner.owns("dave@example.net", "dave@example.org")
    assert owner.mail(Transaction(peer="192.0.2.7", mail_from="<>", authenticated="alice")).action is Action.CONTINUE
    refused = owner.mail(Transaction(peer="192.0.2.7", mail_from="bob@example.org", authenticated="al\x1bice"))
    assert refused.reply == "553 5.7.1 Sender address rejected: not owned by user al?ice"
    config = tmp_path / "spamkit.toml"
    config.write_text('UseBayes = false\nSenderLogins = [\n  "sales alice",\n  "lonely@example.org",\n]\n')
    done = subprocess.run(["python3", "-m", "spamkit", "lint", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "spamkit.toml:2" in done.stderr + done.stdout and "'lonely@example.org' is not ADDRESS LOGIN..." \
        in done.stderr + done.stdout
    config.write_text('UseBayes = false\nSmtpFilters = ["relay", "senderlogin"]\n')
    done = subprocess.run(["python3", "-m", "spamkit", "lint", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert "SmtpAuthentication is off: it checks nothing" in done.stdout + done.stderr


def send_to(client: Client, sender: str, recipients: list[str]) -> list[bytes]:
    """One message to several recipients: each RCPT's reply, then DATA's end (if any taken)."""
    assert client.command(b"MAIL FROM:<" + sender.encode() + b">").startswith(b"250")
    replies = [client.command(b"RCPT TO:<" + recipient.encode() + b">") for recipient in recipients]
    if any(reply.startswith(b"250") for reply in replies):
        assert client.command(b"DATA").startswith(b"354")
        replies.append(client.command(PLAIN + b"."))
    else:
        assert client.command(b"RSET").startswith(b"250")
    return replies


def test_sendlimit_defers_a_user_past_their_recipients_an_hour(
        auth_server: Callable[..., AuthServer], sink: Sink, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A script on a stolen password sends to thousands: past SendLimitPerHour, a login's
    next RCPT hears 450 (its mail program tries again later), counted over all its
    sessions and kept in a database across a restart; the first deferral in an hour is a
    warning in the log. A user's own limit comes from their [user.NAME] table."""
    settings = (f'SmtpFilters = ["relay", "sendlimit"]\nSendLimitPerHour = 5\n'
                f'SendLimitDatabase = "{tmp_path / "sendlimit"}"\n[user.bob]\nSendLimitPerHour = 8\n')
    server = auth_server(settings)
    alice = server.secure(server.client())
    assert alice.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    friends = [f"friend{index}@elsewhere.example" for index in range(8)]
    assert [reply[:3] for reply in send_to(alice, "alice@example.org", friends[:3])] == [b"250"] * 4
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        replies = send_to(alice, "alice@example.org", friends[3:6])
        assert [reply[:3] for reply in replies] == [b"250", b"250", b"450", b"250"]
        assert replies[2] == b"450 4.7.1 User alice has sent to 5 recipients in the last hour; try again later"
        again = server.secure(server.client())  # (another session: the same count)
        assert again.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
        assert send_to(again, "alice@example.org", friends[6:7])[0].startswith(b"450")
    warnings = [r.getMessage() for r in caplog.records if "sendlimit=reached" in r.getMessage()]
    assert warnings == ["client=127.0.0.1 user=alice sendlimit=reached recipients=5 limit=5: deferring its "
                        "mail for up to an hour; a stolen password?"]  # (once an hour)
    bob = server.secure(server.client())
    assert bob.command(b"AUTH PLAIN " + plain("bob", "secret2")).startswith(b"235")
    assert [reply[:3] for reply in send_to(bob, "bob@example.org", friends[:6])] == [b"250"] * 7
    # strangers' mail to us is not counted nor limited
    for _ in range(3):
        assert send_to(server.client(), "someone@example.net", ["alice@example.org"] * 3)[-1].startswith(b"250")
    assert server.metrics.refusals.counts() == {("sendlimit",): 2}
    # a restart keeps the count
    restarted = auth_server(settings)
    alice = restarted.secure(restarted.client())
    assert alice.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    assert send_to(alice, "alice@example.org", friends[7:8])[0].startswith(b"450")
    assert len(sink.messages()) == 2 + 1 + 3
    # the administrator's view, and the deferral lifted
    config = tmp_path / "sendlimit.toml"
    config.write_text(settings)

    def sendlimit(*arguments: str) -> dict[str, object]:
        done = subprocess.run(["python3", "-m", "spamkit", "sendlimit", *arguments, "--json", "--config",
                               str(config)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        listed: dict[str, object] = json.loads(done.stdout)
        return listed

    assert sendlimit("list")["logins"] == [
        {"login": "alice", "recipients": 5, "limit": 5, "deferred": True},
        {"login": "bob", "recipients": 6, "limit": 8, "deferred": False}]
    assert sendlimit("list", "--deferred")["logins"] == [
        {"login": "alice", "recipients": 5, "limit": 5, "deferred": True}]
    assert sendlimit("forget", "alice", "carol") == {"database": str(tmp_path / "sendlimit"),
                                                      "forgotten": ["alice"], "unknown": ["carol"]}
    assert [reply[:3] for reply in send_to(alice, "alice@example.org", friends[7:8])] == [b"250", b"250"]


def test_send_counts_cover_the_last_hour(tmp_path: Path) -> None:
    counts = SendCounts(tmp_path / "counts")
    started = 1_800_000_000.0
    counts.add("Alice", 3, started)
    counts.add("alice", 2, started + 30)  # (the same minute's bucket)
    counts.add("alice", 4, started + 1800)
    assert counts.sent("ALICE", started + 1800) == 9
    assert counts.sent("alice", started + WINDOW - 60) == 9
    assert counts.sent("alice", started + WINDOW + 60) == 4  # the first minute's have gone
    assert counts.sent("alice", started + 1800 + WINDOW + 60) == 0 and counts.sent("bob") == 0
    assert counts.records.prune(started + 1800 + WINDOW + 120) == 1  # nothing kept once idle
    for minute in range(200):
        counts.add("carol", 1, started + minute * 60)
    [(_, record)] = list(counts.records.items(started + 199 * 60))
    assert len(record["sent"]) == WINDOW // 60  # (a record keeps one hour of minutes)


def test_outgoing_archive_copy_includes_users_who_logged_in(
        auth_server: Callable[..., AuthServer], sink: Sink) -> None:
    server = auth_server('BccAddress = "archive@example.org"\nBccDirection = "outgoing"\n')
    stranger = server.secure(server.client())
    assert send(stranger, "someone@example.net", "user@example.org").startswith(b"250")
    user = server.secure(server.client())
    assert user.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")
    assert send(user, "alice@example.org", "friend@elsewhere.example").startswith(b"250")
    incoming, outgoing = sorted(sink.messages(), key=lambda m: b"friend@" in m)
    assert b"archive@example.org" not in incoming
    assert b"X-Rcpt-Args: <archive@example.org>" in outgoing


def test_dovecot_down_or_silent_gets_454(auth_server: Callable[..., AuthServer],
                                         caplog: pytest.LogCaptureFixture) -> None:
    down = auth_server(f'DovecotAuthAddress = "127.0.0.1:{free_port()}"\n')
    client = down.secure(down.client())
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        assert client.command(b"AUTH PLAIN " + plain("alice", "secret")) == \
            b"454 4.7.0 Temporary authentication failure, please try again later"
    assert "client=127.0.0.1 auth=unavailable user=alice method=PLAIN: Dovecot at 127.0.0.1:" in caplog.text
    assert down.metrics.logins.counts() == {("unavailable",): 1}
    # a 454 is no guess: the client may try again as often as it likes
    for _ in range(3):
        assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"454")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # takes the connection, never answers
        silent = auth_server(f'DovecotAuthAddress = "127.0.0.1:{listener.getsockname()[1]}"\nAuthTimeout = 1\n')
        client = silent.secure(silent.client())
        started = time.monotonic()
        assert client.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"454")
        assert 0.9 < time.monotonic() - started < 10
        assert client.command(b"NOOP").startswith(b"250")  # the session goes on


def test_the_client_over_tcp_and_its_answers(dovecot: Dovecot) -> None:
    import asyncio

    over_tcp = DovecotAuth(f"127.0.0.1:{dovecot.auth_port}", 10)
    assert over_tcp.problem() is None
    ok = asyncio.run(over_tcp.check(b"carol", b"secret3", client="192.0.2.7", local="127.0.0.1"))
    assert ok.succeeded and ok.user == "carol" and not ok.temporary
    assert unescape("a\001tb\001nc\0011d\001x") == "a\tb\nc\001dx"
    problem = DovecotAuth("/nonexistent/auth-client", 5).problem()
    assert problem is not None and "No such file" in problem


def test_lint_and_serve_say_what_keeps_logins_from_working(dovecot: Dovecot, sink: Sink, tmp_path: Path) -> None:
    config = tmp_path / "spamkit.toml"
    certificate, key = self_signed_certificate(tmp_path)
    tls = f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n'

    def lint(settings: str) -> str:
        config.write_text("UseBayes = false\nSmtpAuthentication = true\n" + settings)
        result = subprocess.run(["python3", "-m", "spamkit", "lint", "--config", str(config)],
                                capture_output=True, text=True, timeout=120)
        return result.stdout + result.stderr

    assert "AUTH is never offered" in lint(f'DovecotAuthAddress = "{dovecot.auth_socket}"\n')
    assert "warning" not in lint(f'DovecotAuthAddress = "{dovecot.auth_socket}"\n{tls}')
    assert "passwords are taken on unencrypted sessions" in lint(
        f'DovecotAuthAddress = "{dovecot.auth_socket}"\nTlsBeforeAuth = false\n')
    said = lint(f'DovecotAuthAddress = "127.0.0.1:{free_port()}"\n{tls}')
    assert "every login would get 454" in said and "Connect call failed" in said
    # serve checks as the user it runs as: Dovecot's own auth-client socket is its user's only
    config.write_text(f'UseBayes = false\nLocalDomains = ["example.org"]\nSmtpAuthentication = true\n{tls}'
                      f'DovecotAuthAddress = "{dovecot.root / "run" / "auth-client"}"\n')
    process, _ = start_serve(sink.port, tmp_path / "db", config)
    status, stderr = stop_serve(process)
    assert status == 0
    assert b"no permission to use Dovecot's auth socket" in stderr, stderr.decode()[-2000:]


def test_an_address_that_keeps_failing_is_held_back_without_asking_dovecot(
        auth_server: Callable[..., AuthServer], caplog: pytest.LogCaptureFixture) -> None:
    server = auth_server("AuthFailureLimit = 2\n")
    client = server.secure(server.client("127.0.0.31"))
    for guess in ("one", "two"):
        assert client.command(b"AUTH PLAIN " + plain("alice", guess)).startswith(b"535")
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        again = server.secure(server.client("127.0.0.31"))
        started = time.monotonic()
        # even the right password: the address has used up its tries for the hour
        assert again.command(b"AUTH PLAIN " + plain("alice", "secret")) == \
            b"454 4.7.0 Too many failed logins from your address, try again later"
        assert again.command(b"AUTH LOGIN").startswith(b"454")  # asked for nothing
        assert time.monotonic() - started < 1  # (Dovecot, which answers a failure after 2 s, is not asked)
    assert "client=127.0.0.31 auth=limited method=PLAIN" in caplog.text
    assert server.metrics.logins.counts() == {("failed",): 2, ("limited",): 2}
    other = server.secure(server.client("127.0.0.32"))
    assert other.command(b"AUTH PLAIN " + plain("alice", "secret")).startswith(b"235")


def test_login_failures_are_counted_by_address_for_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = LoginFailures(3, LocalClients(["192.168.1.0/24"], []))
    for second in (0, 10, 20):
        assert not failures.held_back("192.0.2.1", now=second)
        failures.failed("192.0.2.1", now=second)
    assert failures.held_back("192.0.2.1", now=30)
    assert not failures.held_back("192.0.2.2", now=30)
    assert failures.held_back("192.0.2.1", now=3599)
    assert not failures.held_back("192.0.2.1", now=3601)  # the oldest is an hour old
    # an IPv6 client is counted by its /64, which one machine is usually given whole
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"):
        failures.failed(host, now=0)
    assert failures.held_back("2001:db8:1:2::77", now=1)
    assert not failures.held_back("2001:db8:1:3::1", now=1)
    # LocalNetworks are never held back (a webmail logs all its users in from one address)
    for _ in range(10):
        failures.failed("192.168.1.5", now=0)
    assert not failures.held_back("192.168.1.5", now=1)
    assert not LoginFailures(0).held_back("192.0.2.1")  # 0: no limit
    # a botnet's addresses cannot grow the memory past its cap: the oldest go first
    monkeypatch.setattr(auth, "REMEMBERED_ADDRESSES", 100)
    many = LoginFailures(1)
    for n in range(250):
        many.failed(f"10.0.{n // 256}.{n % 256}", now=n)
    assert not many.held_back("10.0.0.0", now=300) and many.held_back("10.0.0.249", now=300)
    assert len(many._times) == 100
    # a reload keeps what was counted, with the new limit
    config = config_from_text("SmtpAuthentication = true\nAuthFailureLimit = 5\n", Path("spamkit.toml"), {})
    reloaded = configured_auth(config, None, failures)
    assert reloaded is not None and reloaded.failures is failures and failures.limit == 5
