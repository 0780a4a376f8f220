"""`spamkit serve`: the SMTP filter in front of (or behind) the MTA."""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
import signal
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spamkit.cli import config_option, db_option, resolve_db_path
from spamkit.cli.hangup import hangups_held
from spamkit.config import load_config
from spamkit.config.endpoints import split_host_port
from spamkit.errors import ConfigError, SpamkitError
from spamkit.store.watch import DatabaseWatch
from spamkit.verdict import Scanner, reload_logged

if TYPE_CHECKING:
    from smtpfilter.server import StageRunner
    from smtpfilter.tls import CertificateInForce
    from spamkit.config import Config
    from spamkit.store.base import TokenStore


# how long SIGTERM lets the messages under way be answered, by serve and the milter
# (contrib/systemd's units give the whole stop TimeoutStopSec=120 and 60)
SHUTDOWN_WAIT = 30.0


def report_fatal_signals() -> None:
    """A daemon that dies of a fatal signal (SIGSEGV or SIGBUS from a damaged or truncated
    LMDB file, SIGABRT) writes every thread's Python stack to stderr, the journal, first:
    otherwise the journal says only that it died. (faulthandler, standard library.)"""
    import faulthandler

    faulthandler.enable(all_threads=True)


def host_port(text: str) -> tuple[str, int]:
    """--listen and --next-hop (the settings are checked as the file is read)."""
    try:
        return split_host_port(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def refuse_next_hop_to_itself(listen_text: str, next_hop_text: str, option: str = "--listen") -> None:
    """A next hop that is this filter's own listening address would send every message
    round to itself: each recipient check and each relay opens one more session of its
    own, and the client hears nothing until its timeout. Refused before listening.

    A next hop whose name does not resolve now is let be (the DNS may be back before the
    first message, which is deferred with 4xx meanwhile)."""
    listen, next_hop = host_port(listen_text), host_port(next_hop_text)
    if listen[1] != next_hop[1]:
        return
    try:
        hop_addresses = {str(info[4][0]) for info in socket.getaddrinfo(
            next_hop[0], next_hop[1], type=socket.SOCK_STREAM)}
        listen_infos = socket.getaddrinfo(listen[0], listen[1], type=socket.SOCK_STREAM,
                                          flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return
    for *_, sockaddr in listen_infos:
        address = str(sockaddr[0])
        wildcard = _any_address(address)
        for hop in hop_addresses:
            if hop == address or (wildcard and _is_this_machines(hop)):
                raise click.UsageError(
                    f"--next-hop {next_hop_text} is where this filter listens ({option} "
                    f"{listen_text}): mail would go round to itself; give "
                    "the MTA's reinjection port (e.g. Postfix's 127.0.0.1:10026)")


def _any_address(host: str) -> bool:
    """Whether a listening host is every address of the machine (0.0.0.0, ::)."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_unspecified
    except ValueError:
        return host in ("", "*")


def _is_this_machines(address: str) -> bool:
    """Whether `address` is one of this machine's: only those can be bound."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def account_to_run_as(name: str | None, command: str = "serve") -> pwd.struct_passwd | None:
    """The account `serve` (or `spamd`) switches to, checked before anything is opened.

    A filter that parses whatever the Internet sends should not hold root (reliability
    checklist 39): as root it needs --user; as anyone else --user may only name itself.
    """
    if name is None:
        if os.geteuid() == 0:
            raise ConfigError(f"spamkit {command} will not run as root: give --user NAME (a user of "
                              "its own, e.g. spamkit), to which it switches once its databases "
                              "are open and its port is listening")
        return None
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"--user {name}: no such user") from None
    if account.pw_uid == 0:
        raise ConfigError(f"--user {name}: that is root")
    if os.geteuid() != 0:
        if account.pw_uid != os.geteuid():
            raise ConfigError(f"--user {name}: only root can switch users")
        return None
    return account


def daemon_scanner(config: Config, db_path: str | None, config_path: str | None,
                   log: logging.Logger) -> tuple[DatabaseWatch, Scanner]:
    """A daemon's token database and its scanner, ready before the first message: the
    rules compiled (or loaded), and what a scan loads on first use loaded while the files
    are still readable (before --user). A database it cannot use does not stop it: each
    message gets WhenDatabaseDown, and the watch tries again every DatabaseRetry s."""
    database = DatabaseWatch(resolve_db_path(db_path, config_path), config["DatabaseRetry"], log)
    if config["UseBayes"]:
        database.open()
    try:
        scanner = Scanner.from_config(config, database.store, database_down=database.down)
        scanner.rules.prepare_multiscan()
        scanner.warm_up()
    except BaseException:
        database.close()
        raise
    return database, scanner


def become(account: pwd.struct_passwd, scanner: Scanner) -> None:
    """Give up root for `account`, the scanner warmed up before (Scanner.warm_up: what a
    scan would load later, `account` may not be able to read) and tried after."""
    drop_privileges(account)
    try:
        scanner.warm_up()
    except Exception as error:  # a scan that fails now would fail for every message
        raise ConfigError(f"as {account.pw_name}, a test scan failed ({type(error).__name__}: "
                          f"{error}): {account.pw_name} must be able to read Python "
                          f"({sys.prefix}) and spamkit") from None


def drop_privileges(account: pwd.struct_passwd) -> None:
    """Become `account` for good: its groups, as /etc/group gives them, and its user (for
    every thread of the process: glibc applies setuid to all of them). The groups are
    how an administrator lets the filter's user read a private key without giving it
    root's: Debian's ssl-cert group owns /etc/ssl/private (serve reads its certificate
    again when it is renewed, long after it gave up root)."""
    os.initgroups(account.pw_name, account.pw_gid)
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:  # setuid cannot be undone; check it held
        raise ConfigError(f"could not switch to {account.pw_name}")


def reload_chain(handler: StageRunner, current: Scanner, config_path: str | None,
                 store: TokenStore | None, autolearn: bool, certificate: CertificateInForce | None,
                 set_at_start: tuple[str, ...] | None = None, command: str = "serve") -> Scanner:
    """SIGHUP: the configuration, rules and lists read again and a new filter chain built
    from them, and the TLS certificate and key loaded again; sessions go on meanwhile, and
    each stage after the swap runs the new chain. What is set up once at start (the
    listening address, session limits, whether there is TLS, the databases,
    MetricsListen: `set_at_start`, serve's by default) needs a restart. A broken
    configuration changes nothing."""
    from smtpfilter.plugins import build_chain, start_warnings

    log = logging.getLogger("spamkit.smtpfilter")
    scanner = reload_logged(current, config_path, store, log)
    if scanner is None:
        return current
    try:
        chain = build_chain(scanner.config, scanner, autolearn)
    except Exception as error:  # (a daemon's reload must never take it down)
        log.error("reload: %s; the configuration in force stays", _said(error))
        return current
    handler.configure(scanner.config, chain)
    log.info("reload: configuration, rules (%d) and filters (%s) read again",
             scanner.rules.report.loaded, ", ".join(f.name for f in chain.filters))
    try:
        waiting = [name for name in (SET_AT_START if set_at_start is None else set_at_start)
                   if scanner.config[name] != current.config[name]]
        if certificate is not None:
            waiting += certificate.reload(scanner.config["TlsCertificate"], scanner.config["TlsKey"],
                                          scanner.config.origins)
        if waiting:  # (an admin who changed one of these would otherwise wonder why nothing did)
            log.warning("reload: %s changed, which takes effect only when %s restarts", ", ".join(waiting), command)
        for warning in start_warnings(scanner.config):  # (a DKIM key made since, root's alone: unread)
            log.warning("reload: %s", warning)
    except Exception as error:  # (the new chain is in force; only what is said of it failed)
        log.error("reload: %s", _said(error))
    return scanner


def _said(error: Exception) -> str:
    """An error for the log: ours in its own words, anything else with its type."""
    return str(error) if isinstance(error, SpamkitError) else f"{type(error).__name__}: {error}"


def database_back(handler: StageRunner, scanner: Scanner, autolearn: bool) -> Scanner:
    """The token database can be used again (DatabaseWatch.refreshed gave `scanner`, the
    same configuration over it): its chain, from the next stage of every session on."""
    from smtpfilter.plugins import build_chain

    try:
        chain = build_chain(scanner.config, scanner, autolearn)
    except SpamkitError as error:  # (what built at start builds again, unless a file went)
        logging.getLogger("spamkit.smtpfilter").error(
            "the token database is back, but the filters could not be built again (%s): "
            "send SIGHUP once that is mended", error)
        return scanner
    handler.configure(scanner.config, chain)
    return scanner


# settings `serve` applies once, when it starts: a reload reads them but cannot apply them
SET_AT_START = ("MaxSessions", "MaxSessionsPerClient", "MaxLoad", "EarlyTalkerDelay",
                "SmtpMaxMessageSize", "SmtpTimeout", "MetricsListen",
                "UseBayes", "SmtpHostname", "TlsBeforeAuth", "ImplicitTlsLoginRequired")


F = TypeVar("F", bound=Callable[..., Any])


def daemon_options(function: F) -> F:
    """--autolearn and --user, as `serve` and `spamd` take them."""
    function = click.option("--user", "run_as", metavar="NAME",
                            help="The user to switch to once the databases are open and it "
                                 "listens; needed when started as root, which it refuses to "
                                 "stay.")(function)
    return click.option("--autolearn/--no-autolearn", default=False,
                        help="Learn what autolearn picks.")(function)


def _check_submission(option: str, address: str, config: Config, tls: bool, auth: bool) -> None:
    """ConfigError unless a port that takes only logged-in users' mail (--listen-submission,
    or --listen-tls with ImplicitTlsLoginRequired) could take anyone's: it needs logins,
    and when TlsBeforeAuth keeps AUTH for encrypted sessions, a certificate."""
    if not auth:
        raise ConfigError(f"{option} {address} takes mail only from users who log "
                          f"in, and SmtpAuthentication is off ({config.where('SmtpAuthentication')})")
    if config["TlsBeforeAuth"] and not tls:
        raise ConfigError(f"{option} {address} takes mail only from users who log "
                          "in, and with TlsBeforeAuth they log in after STARTTLS, which needs "
                          "TlsCertificate and TlsKey, which are not set")


@click.command()
@click.option("--listen", default="127.0.0.1:10025", show_default=True, help="Address to listen on.")
@click.option("--listen-tls", metavar="HOST:PORT",
              help="Also listen here with TLS from the first byte (port 465: RFC 8314's "
                   "submissions, SME's SMTP over SSL), with TlsCertificate and TlsKey.")
@click.option("--listen-submission", metavar="HOST:PORT",
              help="Also listen here for our users' own mail (port 587: RFC 6409's "
                   "submission): STARTTLS, then AUTH, before MAIL; needs SmtpAuthentication.")
@click.option("--next-hop", default="127.0.0.1:10026", show_default=True,
              help="Where accepted mail goes.")
@daemon_options
@db_option
@config_option
def serve(listen: str, listen_tls: str | None, listen_submission: str | None, next_hop: str, autolearn: bool,
          run_as: str | None, db_path: str | None, config_path: str | None) -> None:
    """Run the SMTP filter until SIGTERM or SIGINT.

    On SIGTERM it takes no new session, lets messages being relayed finish, answers idle
    sessions 421 (the client retries later) and exits 0. On SIGHUP it reads the
    configuration, rules and lists again and rebuilds its filters (a broken configuration
    is logged and changes nothing). It does not run as root: started as root, it needs
    --user, and drops to that user before taking mail. A token database it cannot use
    (unreachable, or found damaged) does not stop it: each message gets WhenDatabaseDown
    until a retry (every DatabaseRetry seconds) finds the database sound and answering.
    """
    reload = hangups_held()
    refuse_next_hop_to_itself(listen, next_hop)
    tls_address = host_port(listen_tls) if listen_tls is not None else None
    submission_address = host_port(listen_submission) if listen_submission is not None else None
    taken = [("--listen", listen)]
    for option, value, port_hint in (("--listen-tls", listen_tls, "465 for TLS from the first byte"),
                                     ("--listen-submission", listen_submission, "587 for submission")):
        if value is None:
            continue
        refuse_next_hop_to_itself(value, next_hop, option)
        value_host, value_port = host_port(value)
        for other_option, other in taken:
            other_host, other_port = host_port(other)
            if value_port == other_port and (value_host == other_host or _any_address(value_host)
                                             or _any_address(other_host)):
                raise click.UsageError(f"{option} {value} is {other_option}'s address too: give "
                                       f"each its own port ({port_hint})")
        taken.append((option, value))
    account = account_to_run_as(run_as)
    from smtpfilter.archive import ArchiveCopy
    from smtpfilter.auth import auth_warnings, configured_auth
    from smtpfilter.limits import LimitedController, SessionLimits
    from smtpfilter.metrics import Metrics
    from smtpfilter.plugins import build_chain, our_name, start_warnings
    from smtpfilter.server import FilterHandler
    from smtpfilter.tls import CertificateInForce
    from smtpfilter.trace import Trace, trace_resolver

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # aiosmtpd logs five lines a connection at INFO (peer, AUTH mechanisms, EOF...); ours
    # is the one line a transaction that the issue asks for. Its warnings still show.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    config = load_config(config_path)
    log = logging.getLogger("spamkit.smtpfilter")
    database, scanner = daemon_scanner(config, db_path, config_path, log)
    hostname = our_name(config)
    metrics = Metrics()
    if config["MetricsListen"]:
        metrics.serve(*host_port(config["MetricsListen"]))
    handler = FilterHandler(build_chain(config, scanner, autolearn), host_port(next_hop),
                            ArchiveCopy.configured(config), metrics, forwarders=tuple(config["RelayClients"]),
                            scan_budget=config["ScanBudget"],
                            verify_recipients=config["SmtpVerifyRecipients"],
                            trace=Trace(trace_resolver(config), hostname), auth=configured_auth(config, metrics))
    host, port = host_port(listen)
    limits = SessionLimits(config["MaxSessions"], config["MaxSessionsPerClient"], config["MaxLoad"],
                           config["EarlyTalkerDelay"], tuple(config["LocalNetworks"]))
    certificate = CertificateInForce(config["TlsCertificate"], config["TlsKey"], config.origins)
    tls = certificate.context
    metrics.tls_certificate_end = lambda: certificate.ends
    warnings = start_warnings(config)  # (as root: the DKIM keys are root's)
    if listen_tls is not None and tls is None:
        raise ConfigError(f"--listen-tls {listen_tls} needs TlsCertificate and TlsKey (the "
                          "certificate its clients are shown), which are not set")
    if listen_submission is not None:
        _check_submission("--listen-submission", listen_submission, config, tls is not None,
                          handler.auth is not None)
    if listen_tls is not None and config["ImplicitTlsLoginRequired"]:
        _check_submission("--listen-tls", listen_tls, config, tls is not None, handler.auth is not None)
    controller = LimitedController(handler, limits,
                                   before_serving=(lambda: become(account, scanner)) if account else None,
                                   tls_listen=tls_address, submission_listen=submission_address,
                                   tls_login_required=config["ImplicitTlsLoginRequired"],
                                   hostname=host, port=port,
                                   data_size_limit=config["SmtpMaxMessageSize"], timeout=config["SmtpTimeout"],
                                   tls_context=tls, require_starttls=False, ident="ESMTP spamkit",
                                   auth_require_tls=config["TlsBeforeAuth"],
                                   # the greeting's name, found once (aiosmtpd would call
                                   # getfqdn for every connection)
                                   server_hostname=hostname)
    certificate.installing_with(controller.use_tls_context)
    # Envelope stages and scoring run on these threads. The default pool (cores + 4) would
    # let a few sessions waiting on a slow DNS list hold up every other session's scoring.
    workers = ThreadPoolExecutor(max_workers=max(8, min(64, config["MaxSessions"])),
                                 thread_name_prefix="spamkit-filter")
    controller.loop.set_default_executor(workers)
    stop = threading.Event()
    stopped_by: list[str] = []

    def stopping(signum: int, _frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)  # (SIGHUP sets `reload`: hangups_held)
    report_fatal_signals()
    controller.start()  # (as `account`, when given, before its first session: before_serving)
    for warning in [*warnings, *auth_warnings(config)]:  # (auth's as `account`, whose right to the socket counts)
        log.warning("%s", warning)
    click.echo(f"spamkit serve: listening on {host}:{port}"
               f"{f' and {listen_tls} (TLS)' if listen_tls is not None else ''}"
               f"{f' and {listen_submission} (submission)' if listen_submission is not None else ''}"
               f", next hop {next_hop}"
               f"{', STARTTLS offered' if tls else ''}"
               f"{f', running as {account.pw_name}' if account is not None else ''}", err=True)
    try:
        while not stop.wait(0.2):
            if reload.is_set():
                reload.clear()
                scanner = reload_chain(handler, scanner, config_path, database.store, autolearn, certificate)
            certificate.poll()  # (a renewed certificate: loaded once its files change)
            if (fresh := database.refreshed(scanner)) is not None:
                scanner = database_back(handler, fresh, autolearn)
        log.info("%s: stopping. New sessions are refused; %d message(s) being checked or relayed "
                 "get up to %g s to be answered", stopped_by[0], handler.in_flight, SHUTDOWN_WAIT)
        controller.shutdown(lambda: handler.in_flight > 0, SHUTDOWN_WAIT)
        if handler.in_flight:  # (never accepted: their clients, hearing no reply, send them again)
            log.warning("%d message(s) still unanswered after %g s: their sessions are closed "
                        "without a reply, and their clients will retry", handler.in_flight, SHUTDOWN_WAIT)
        # a check answered 451 at ScanBudget goes on until its own filter's timeout
        # (PyzorTimeout, say): the database it reads closes after it has ended
        workers.shutdown(wait=True)
    finally:
        database.close()
    log.info("stopped")
