"""A real Dovecot 2.3 on loopback with Maildir storage (../shared/recipes/real-servers.md).

Plain IMAP on one port and IMAPS on another, with a self-signed certificate whose CA
file the TLS tests pass as `ca_file`. The plain port also listens on three more loopback
addresses where Dovecot advertises less, as older servers do: `MOVE_ONLY_HOST` offers
MOVE but not UIDPLUS, `UIDPLUS_ONLY_HOST` UIDPLUS but not MOVE, `BARE_HOST` neither.
`PREFIXED_USER` has every folder under the personal namespace prefix "INBOX.", as on
Courier and Cyrus; `FS_USER`'s folders are in Dovecot's LAYOUT=fs; `MASTER_USER` may log in to every mailbox. Its auth service also
listens for SMTP AUTH's questions, on `auth_socket` and on AUTH_PORT. The other users' folders are
on disk as Maildir++, so tests put corpus messages in with plain file writes and read the
results back the same way.
"""

from __future__ import annotations

import mailbox
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.net import free_port, self_signed_certificate, wait_for_port

USERS = {"alice": "secret", "bob": "secret2", "carol": "secret3"}
MOVE_ONLY_HOST = "127.0.0.2"
BARE_HOST = "127.0.0.3"
UIDPLUS_ONLY_HOST = "127.0.0.4"
# A user whose folders sit under the personal namespace's prefix "INBOX." (so LearnAsSpam
# is INBOX.LearnAsSpam), as on Courier, Cyrus and Dovecots configured like them.
PREFIXED_USER = "dave"
PREFIXED_PASSWORD = "secret4"
# A user whose Maildir has Dovecot's LAYOUT=fs (LearnAsSpam/, Junk/LearnAsSpam/ on disk),
# with "/" between levels as Dovecot's default for it.
FS_USER = "erin"
FS_PASSWORD = "secret5"
# A master user (Dovecot's master passdb): with its password it opens any user's mailbox,
# by SASL PLAIN with that user as the authorization identity.
MASTER_USER = "spamkit"
MASTER_PASSWORD = "master-secret"


def logins() -> dict[str, str]:
    """Every login: USERS (which a benchmark may replace), the prefixed user and the fs one."""
    return {**USERS, PREFIXED_USER: PREFIXED_PASSWORD, FS_USER: FS_PASSWORD}


@dataclass
class Dovecot:
    root: Path
    plain_port: int
    tls_port: int
    auth_port: int  # its auth service's inet_listener, which SMTP AUTH may ask over TCP

    @property
    def ca_file(self) -> Path:
        return self.root / "cert.pem"

    @property
    def auth_socket(self) -> Path:
        """Its auth service's socket for SMTP AUTH, which any user (serve's `nobody`) may use."""
        return self.root / "run" / "smtp-auth"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "Maildir"

    def fill(self, user: str, folder: str, messages: list[bytes]) -> None:
        """Deliver messages into a user's folder on disk, owned as Dovecot expects."""
        self.maildir(user).parent.mkdir(parents=True, exist_ok=True)
        maildir = mailbox.Maildir(self.maildir(user), create=True)
        target = maildir.add_folder(folder) if folder.upper() != "INBOX" else maildir
        for data in messages:
            target.add(data)
        subprocess.run(["chown", "-R", "dovecot:dovecot", str(self.root / "mail")], check=True)

    def count(self, user: str, folder: str) -> int:
        base = self.maildir(user) / f".{folder}"
        return sum(len(os.listdir(base / sub)) for sub in ("new", "cur") if (base / sub).exists())

    def doveadm(self, *arguments: str, input: bytes | None = None,
                check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run doveadm against this server, e.g. to change a folder's UIDVALIDITY, or to
        save `input` as a message (`-o NAME=VALUE` first sets a setting for this run);
        with check=False, a refusal is returned, not raised."""
        return subprocess.run(["doveadm", "-c", str(self.root / "dovecot.conf"), *arguments], input=input,
                              check=check, capture_output=True, timeout=30)

    def clear(self) -> None:
        for user in logins():
            shutil.rmtree(self.root / "mail" / user, ignore_errors=True)
        # Dovecot caches folder state in its index files under the Maildir; removing the
        # Maildir removes them too, so each test starts from fresh mailboxes.

    def accounts_file(self, path: Path, security: str = "none", users: tuple[str, ...] = tuple(USERS),
                      host: str = "127.0.0.1", **extra: object) -> Path:
        port = self.tls_port if security == "tls" else self.plain_port
        lines = []
        for user in users:
            lines += ["[[account]]", f'user = "{user}"', f'password = "{logins()[user]}"',
                      f'host = "{host}"', f"port = {port}", f'security = "{security}"']
            for key, value in extra.items():
                lines.append(f"{key} = {json.dumps(value)}")  # TOML's strings, numbers and true/false
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        return path


def start_dovecot() -> Iterator[Dovecot]:
    if shutil.which("dovecot") is None:
        raise RuntimeError("Dovecot is missing: install the Debian package `dovecot-imapd` "
                           "(scripts/install-test-deps.sh does)")
    root = Path(tempfile.mkdtemp(prefix="spamkit-dovecot-"))
    os.chmod(root, 0o755)  # the dovecot user must get in
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    subprocess.run(["chown", "dovecot:dovecot", str(root / "mail")], check=True)
    self_signed_certificate(root)
    os.chmod(root / "key.pem", 0o644)
    (root / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in logins().items()))
    (root / "masters").write_text(f"{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n")
    extra_fields = {PREFIXED_USER: "userdb_namespace/inbox/prefix=INBOX.",
                    FS_USER: "userdb_mail=maildir:~/Maildir:LAYOUT=fs userdb_namespace/inbox/separator=/"}
    (root / "userdb").write_text("".join(f"{u}:::::::{extra_fields.get(u, '')}\n" for u in logins()))
    plain_port = _free_port_on("127.0.0.1", MOVE_ONLY_HOST, BARE_HOST, UIDPLUS_ONLY_HOST)
    tls_port, auth_port = free_port(), free_port()
    (root / "dovecot.conf").write_text(f"""
first_valid_uid = 1
mail_privileged_group =
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1, {MOVE_ONLY_HOST}, {BARE_HOST}, {UIDPLUS_ONLY_HOST}
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:{root}/mail/%u/Maildir
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/masters
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
namespace inbox {{
  inbox = yes
  separator = .
  prefix =
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/userdb
  default_fields = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1, {MOVE_ONLY_HOST}, {BARE_HOST}, {UIDPLUS_ONLY_HOST}
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service auth {{
  unix_listener smtp-auth {{
    mode = 0666
  }}
  inet_listener {{
    address = 127.0.0.1
    port = {auth_port}
  }}
}}
local {MOVE_ONLY_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 IDLE NAMESPACE MOVE
  }}
}}
local {UIDPLUS_ONLY_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 IDLE NAMESPACE UIDPLUS
  }}
}}
local {BARE_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 IDLE NAMESPACE
  }}
}}
""")
    subprocess.run(["dovecot", "-c", str(root / "dovecot.conf")], check=True)
    try:
        for port in (plain_port, tls_port, auth_port):
            wait_for_port(port)
        yield Dovecot(root, plain_port, tls_port, auth_port)
    finally:
        subprocess.run(["dovecot", "-c", str(root / "dovecot.conf"), "stop"], check=False)
        time.sleep(0.5)
        shutil.rmtree(root, ignore_errors=True)


def _free_port_on(*addresses: str) -> int:
    """A port free on each of these loopback addresses. Ports of their own for each
    Dovecot: with fixed ones, a Dovecot left running by a killed run answered the next
    run's tests (or kept its own from starting: 46 errors of "Address already in use")."""
    for _ in range(50):
        port = free_port()
        try:
            for address in addresses:
                with socket.socket() as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {addresses}")
