"""A private Postfix instance on loopback as the next hop, the way an SME or Postfix
host reinjects filtered mail: a real smtpd whose recipient checks can refuse one
recipient and defer another, with every accepted message put on hold so that a test
reads what was accepted, and for whom, with `postqueue -j`. Or a Postfix in front of the
filter, as its before-queue filter (`start_postfix_in_front`), or one on both sides of
it, as the README lays it out (`start_postfix_around_filter`), or one with the filter
after its queue (`start_postfix_after_queue`).

Nothing is delivered anywhere: held messages stay in this instance's own queue, which
lives and dies with the fixture's directory. It needs the Debian package `postfix`
(scripts/install-test-deps.sh installs it, unconfigured) and root, as Postfix's master does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.net import free_port, wait_for_port

# the daemons a queue needs; smtpd listens on the fixture's port
_SERVICES = """\
{port} inet n - n - - smtpd{options}
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass(frozen=True)
class PostfixNextHop:
    port: int
    config: Path

    def held(self) -> list[tuple[str, list[str]]]:
        """(sender, recipients) of each message Postfix accepted."""
        out = subprocess.run(["postqueue", "-c", str(self.config), "-j"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [(e["sender"], sorted(r["address"] for r in e["recipients"])) for e in entries]

    def messages(self) -> list[bytes]:
        """The headers and body of each message Postfix accepted (postcat -bh)."""
        out = subprocess.run(["postqueue", "-c", str(self.config), "-j"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
        ids = [json.loads(line)["queue_id"] for line in out.splitlines() if line.strip()]
        return [subprocess.run(["postcat", "-c", str(self.config), "-bh", "-q", queue_id], capture_output=True,
                               check=True, timeout=30).stdout for queue_id in ids]

    def clear(self) -> None:
        subprocess.run(["postsuper", "-c", str(self.config), "-d", "ALL"], capture_output=True,
                       check=True, timeout=30)


def start_postfix(refuse: dict[str, str], refuse_senders_at_data: dict[str, str] | None = None,
                  main_cf: str = "") -> Iterator[PostfixNextHop]:
    """Postfix on a free loopback port that answers RCPT for each address in `refuse`
    with the access(5) action given ("REJECT no such user", "DEFER_IF_PERMIT busy"), and
    the DATA command of mail from each sender in `refuse_senders_at_data` likewise;
    `main_cf` is added to its main.cf."""
    def configure(config: Path) -> str:
        (config / "access").write_text("".join(f"{address} {action}\n" for address, action in refuse.items()))
        (config / "senders").write_text("".join(f"{address} {action}\n"
                                                for address, action in (refuse_senders_at_data or {}).items()))
        return f"""\
smtpd_recipient_restrictions = check_recipient_access texthash:{config}/access, permit_mynetworks, reject
smtpd_data_restrictions = check_sender_access texthash:{config}/senders
smtpd_end_of_data_restrictions = check_client_access static:HOLD
""" + main_cf
    yield from _run_postfix(configure, "")


# The README's answer to SMTP smuggling (CVE-2023-51764), in each Postfix laid out as the
# README says: Debian 12's Postfix has it, off by default
README_MAIN_CF = "smtpd_forbid_bare_newline = normalize\n"


def start_postfix_in_front(filter_port: int) -> Iterator[int]:
    """Postfix on a free loopback port with `spamkit serve` on `filter_port` as its
    before-queue filter (SMTPD_PROXY_README: smtpd_proxy_filter), the way a Postfix host
    puts the filter in front of its queue: its port, which takes mail for example.org
    from anyone, passes each session on to the filter and its replies back."""
    def configure(config: Path) -> str:
        return README_MAIN_CF + "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
    for postfix in _run_postfix(configure, f"\n  -o smtpd_proxy_filter=127.0.0.1:{filter_port}"):
        yield postfix.port


def start_postfix_around_filter(filter_port: int, reinjection_port: int, main_cf: str = ""
                                ) -> Iterator[PostfixNextHop]:
    """One Postfix laid out as the README says, with `spamkit serve` between its two
    smtpd services: the public one (the fixture's port) hands each session to the filter
    on `filter_port` (smtpd_proxy_filter), and the filter hands what it passes to the
    reinjection one on `reinjection_port`, which takes the filter's XFORWARD and puts
    each message on hold for the test to read. `main_cf` is added to its main.cf."""
    def configure(config: Path) -> str:
        return (README_MAIN_CF + "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
                "smtpd_end_of_data_restrictions = check_client_access static:HOLD\n"
                "mynetworks = 192.0.2.0/24\n" + main_cf)  # (so that the test's client is a stranger)
    reinjection = f"""\
127.0.0.1:{reinjection_port} inet n - n - - smtpd
  -o smtpd_proxy_filter=
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o receive_override_options=no_unknown_recipient_checks
"""
    yield from _run_postfix(configure, f"\n  -o smtpd_proxy_filter=127.0.0.1:{filter_port}", reinjection)


def start_postfix_after_queue(filter_port: int, reinjection_port: int, main_cf: str = ""
                              ) -> Iterator[PostfixNextHop]:
    """One Postfix with `spamkit serve` on `filter_port` as its after-queue content filter
    (FILTER_README): its public smtpd (the fixture's port) queues each message, its smtp
    client hands it to the filter with XFORWARD, and the filter hands it back to the
    reinjection smtpd on `reinjection_port`, which puts it on hold for the test to read.
    What the filter refuses, this Postfix bounces, as any MTA would. `main_cf` is added
    to its main.cf."""
    def configure(config: Path) -> str:
        return (README_MAIN_CF + f"content_filter = scan:[127.0.0.1]:{filter_port}\n"
                "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
                "mynetworks = 192.0.2.0/24\n" + main_cf)  # (so that the test's client is a stranger)
    services = f"""\
scan      unix  -       -       n       -       4       smtp
  -o smtp_send_xforward_command=yes
  -o disable_mime_output_conversion=yes
127.0.0.1:{reinjection_port} inet n - n - - smtpd
  -o content_filter=
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
  -o {{ smtpd_end_of_data_restrictions = check_client_access static:HOLD }}
"""
    yield from _run_postfix(configure, "", services)


def _run_postfix(configure: Callable[[Path], str], smtpd_options: str, services: str = ""
                 ) -> Iterator[PostfixNextHop]:
    """A private Postfix whose main.cf ends with what `configure` (given the
    configuration directory) returns, whose smtpd takes `smtpd_options`, and whose
    master.cf ends with `services`."""
    if shutil.which("postfix") is None:
        raise RuntimeError("Postfix is missing: install the Debian package `postfix` "
                           "(scripts/install-test-deps.sh does)")
    root = Path(tempfile.mkdtemp(prefix="spamkit-postfix-"))
    root.chmod(0o755)  # Postfix's daemons, as the postfix user, must get in
    config, queue, data = root / "conf", root / "queue", root / "data"
    for directory in (config, queue, data):
        directory.mkdir()
    shutil.chown(data, "postfix")
    port = free_port()
    (config / "master.cf").write_text(_SERVICES.format(port=f"127.0.0.1:{port}", options=smtpd_options)
                                      + services)
    (config / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
shlib_directory = /usr/lib/postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = nexthop.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = example.org
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
default_transport = discard
# (each MAIL takes a token of the queue manager's, which it hands out again as it moves
# mail on; here mail is held, and after ~100 MAILs each next one waited 1 s)
in_flow_delay = 0s
""" + configure(config))
    try:
        started = subprocess.run(["postfix", "-c", str(config), "start"], capture_output=True, text=True,
                                 timeout=60)
        if started.returncode != 0:
            log = (root / "maillog").read_text() if (root / "maillog").exists() else ""
            raise RuntimeError(f"Postfix did not start: {started.stderr}{log[-2000:]}")
        wait_for_port(port)
        yield PostfixNextHop(port, config)
    finally:
        subprocess.run(["postfix", "-c", str(config), "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
