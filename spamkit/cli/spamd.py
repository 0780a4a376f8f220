"""`spamkit spamd`: spamkit behind SpamAssassin's spamd protocol (smtpfilter.spamd)."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from smtpfilter.prefork import parent_gone
from spamkit.cli import config_option, db_option
from spamkit.cli.hangup import hangups_held
from spamkit.cli.serve import (account_to_run_as, become, daemon_options, daemon_scanner, host_port,
                               report_fatal_signals)
from spamkit.config import load_config
from spamkit.errors import ConfigError
from spamkit.store.watch import DatabaseWatch
from spamkit.verdict import Scanner, reload_logged

_log = logging.getLogger("spamkit.spamd")

if TYPE_CHECKING:
    from smtpfilter.networks import Networks
    from smtpfilter.spamd import SpamdServer, SpamdService


@click.command()
@click.option("--listen", default="127.0.0.1:783", show_default=True,
              help="HOST:PORT to listen on (spamd's port); see --socket for a Unix socket.")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False),
              help="Listen on this Unix socket instead (spamc -U, qpsmtpd's spamd_socket).")
@click.option("--socket-mode", default="0666", show_default=True,
              help="Permissions of the Unix socket (octal).")
@click.option("--allowed-ips", default="127.0.0.1,::1", show_default=True,
              help="Clients (addresses or networks, comma-separated) that may connect over TCP.")
@click.option("--max-children", type=click.IntRange(1, 256), default=5, show_default=True,
              help="Messages scanned at once; more connections wait their turn.")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sharing the port, as SpamAssassin's spamd forks children: one "
                   "process scans on one core at a time. --max-children is shared among them.")
@click.option("--allow-tell", is_flag=True,
              help="Accept TELL (spamc -L spam|ham|forget): learning from whoever can connect.")
@click.option("--pyzor", "ask_pyzor", is_flag=True,
              help="Ask PyzorServers about each message (PYZOR_CHECK), as SpamAssassin's spamd "
                   "does with its Pyzor plugin; the answer is written in X-Spamkit-Pyzor.")
@daemon_options
@db_option
@config_option
def spamd(listen: str, socket_path: str | None, socket_mode: str, allowed_ips: str,
          max_children: int, processes: int, allow_tell: bool, ask_pyzor: bool, autolearn: bool,
          run_as: str | None, db_path: str | None, config_path: str | None) -> None:
    """Answer SpamAssassin's spamd protocol, so spamc, qpsmtpd's spamassassin plugin,
    Exim's spamd_address and amavis use spamkit in its place: CHECK, SYMBOLS, REPORT,
    REPORT_IFSPAM, PROCESS, HEADERS, PING, SKIP, and TELL with --allow-tell.

    With --pyzor, each message's body digest goes to PyzorServers first, within
    PyzorTimeout, as with the SMTP filter's pyzor check; spamd cannot tell our users' mail
    from a stranger's, so it asks about all it is given.

    The verdict is `spamkit check`'s (rules, Bayes, lists, at TagLevel); a failure answers
    an error code, on which spamc passes the message on unchanged. SIGTERM lets the
    scans in progress finish; SIGHUP reads the configuration, rules and lists again. It
    does not run as root: started as root, it needs --user. A token database it cannot
    use (unreachable, or found damaged) does not stop it: each request gets
    WhenDatabaseDown until a retry (every DatabaseRetry seconds) finds it sound.

    With --processes N, the process started loads the rules once and forks N children
    that answer the requests; it replaces a child that dies, passes SIGTERM on, and on
    SIGHUP starts new children from the configuration read again (the old ones finish
    what they hold). Signals go to it, not to the children. Started as root, it stays
    root to do this (it reads no request), and each child switches to --user once its
    own database handle is open.
    """
    hangup = hangups_held()
    from smtpfilter.networks import Networks
    from smtpfilter.spamd import SpamdServer, SpamdService
    from spamkit.pyzor import require_package

    _refuse_ignored_options(socket_path is not None)
    if processes > max_children:
        raise click.BadParameter(f"{processes} processes cannot share {max_children} children "
                                 "(--max-children): each process scans one message at a time at "
                                 "least", param_hint="--processes")
    if ask_pyzor:
        require_package("spamkit spamd --pyzor")  # at start, not at the first message
    account = account_to_run_as(run_as, "spamd")
    try:
        mode = int(socket_mode, 8)
    except ValueError:
        raise click.BadParameter(f"{socket_mode!r} is not an octal mode", param_hint="--socket-mode") from None
    try:
        allowed = Networks([part.strip() for part in allowed_ips.split(",") if part.strip()])
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--allowed-ips") from None
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s[%(process)d] %(message)s" if processes > 1
                        else "%(asctime)s %(name)s %(message)s")
    config = load_config(config_path)
    database, scanner = daemon_scanner(config, db_path, config_path, _log)
    try:
        service = SpamdService(scanner, allow_tell, autolearn, config["WhenDatabaseDown"], ask_pyzor)
        listening = unix_listener(socket_path, mode, account) if socket_path else tcp_listeners(listen)
        try:
            if processes == 1:
                if account is not None:
                    become(account, scanner)  # never scan as root, nor with a scanner that cannot scan
            else:
                _try_a_child(database, account, scanner)
            where = socket_path or listen
            running_as = f" running as {account.pw_name}" if account is not None else ""
            click.echo(f"spamkit spamd: listening on {where}, "
                       f"{f'{processes} processes' if processes > 1 else 'one process'}{running_as}",
                       err=True)

            def reload(current: Scanner) -> Scanner | None:
                return reload_logged(current, config_path, database.store, _log)

            if processes == 1:
                asyncio.run(_serve(SpamdServer(service, allowed, max_children), listening, reload,
                                   database.refreshed, hangup=hangup))
            else:
                _serve_in_processes(service, allowed, max_children, processes, listening, account,
                                    database, reload, hangup)
        finally:
            stop_listening(listening, socket_path)
    finally:
        database.close()


def _refuse_ignored_options(on_a_socket: bool) -> None:
    """A Unix socket takes the place of --listen, and is guarded by its mode, not by
    client addresses; given with it, --listen and --allowed-ips were ignored without a
    word (an administrator would think the TCP port open, or the socket restricted), as
    was --socket-mode without --socket."""
    given = click.get_current_context().get_parameter_source
    if on_a_socket:
        named = [option for option, name in (("--listen", "listen"), ("--allowed-ips", "allowed_ips"))
                 if given(name) is ParameterSource.COMMANDLINE]
        if named:
            raise click.UsageError(f"{' and '.join(named)} with --socket: spamd listens on one or the "
                                   "other, and who may use the socket is set by its mode (--socket-mode)")
    elif given("socket_mode") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--socket-mode is for --socket; over TCP, --allowed-ips says who may connect")


# connections waiting to be taken, a listening socket (asyncio's own servers' backlog)
LISTEN_BACKLOG = 100


def tcp_listeners(listen: str) -> list[socket.socket]:
    """A listening socket for each address HOST stands for, as asyncio's start_server
    binds them (SO_REUSEADDR; an IPv6 socket takes IPv6 alone)."""
    host, port = host_port(listen)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listening: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            listener = socket.socket(family, kind, proto)
            listening.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                listener.bind(address)
            except OSError as error:
                raise OSError(error.errno, f"cannot listen on {listen}: {error.strerror}") from None
            listener.listen(LISTEN_BACKLOG)
    except BaseException:
        for listener in listening:
            listener.close()
        raise
    return listening


def unix_listener(path: str, mode: int, account: pwd.struct_passwd | None) -> list[socket.socket]:
    """The Unix socket at `path`, a stale one (left by a spamd that was killed) replaced."""
    if os.path.exists(path) and not _is_socket(path):
        raise ConfigError(f"--socket {path}: a file that is not a socket is there")
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(LISTEN_BACKLOG)
        os.chmod(path, mode)
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)
    except OSError as error:
        listener.close()
        raise OSError(error.errno, error.strerror, path) from None
    return [listener]


def stop_listening(listening: list[socket.socket], socket_path: str | None) -> None:
    """Close the listening sockets, and remove the Unix socket's file if there is one."""
    for listener in listening:
        listener.close()
    if socket_path:
        _remove_socket(socket_path)


def _remove_socket(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:  # its directory is not ours to change: the next start removes it
        _log.warning("spamd: could not remove %s: %s", path, error)


def _serve_in_processes(service: SpamdService, allowed: Networks, max_children: int, processes: int,
                        listening: list[socket.socket], account: pwd.struct_passwd | None,
                        database: DatabaseWatch, reload: Callable[[Scanner], Scanner | None],
                        hangup: threading.Event) -> None:
    """--processes: this process supervises (smtpfilter.prefork) and each child serves.

    Started as root, the supervisor stays root, as SpamAssassin's spamd and Postfix's
    master do: a child's database handle cannot be the parent's (LMDB's may not cross a
    fork), so each child opens its own and only then gives up root, and a child that
    replaces one that died must be able to do the same. The supervisor reads no request;
    it forks, waits, and reads the configuration again on SIGHUP."""
    from smtpfilter.prefork import Prefork, share
    from smtpfilter.spamd import SpamdServer

    parent = os.getpid()

    def child(index: int) -> int:
        _start_child(database, account, service.scanner)
        server = SpamdServer(service, allowed, share(max_children, processes, index))
        asyncio.run(_serve(server, listening, None, database.refreshed, parent))
        return 0

    def reread() -> bool:
        scanner = reload(service.scanner)
        if scanner is None:
            return False
        service.scanner = scanner
        _log.info("reload: configuration and rules (%d) read again; new children start",
                  scanner.rules.report.loaded)
        return True

    def follow_database() -> None:
        """The parent scans nothing, but its handle on a replaced LMDB file would keep
        the children from opening the new one: it follows the file as they do."""
        scanner = database.refreshed(service.scanner)
        if scanner is not None:
            service.scanner = scanner

    Prefork(processes, child, reread, _log, tick=follow_database, hangup_before=hangup).run()


def _start_child(database: DatabaseWatch, account: pwd.struct_passwd | None, scanner: Scanner) -> None:
    """What a child of --processes does first: open its own handle on the database (while
    it still may), then give up root."""
    if database.store is not None:
        database.store.meta_value("tokenizer")
    if account is not None:
        become(account, scanner)  # never scan as root, nor with a scanner that cannot scan


def _try_a_child(database: DatabaseWatch, account: pwd.struct_passwd | None, scanner: Scanner) -> None:
    """A child's start, tried once in a child of its own before the children start for
    good: a start that cannot work (the user cannot read Python, say) stops spamd with
    its reason, instead of children that die and are replaced without end."""
    from smtpfilter.prefork import try_in_a_child

    failure = try_in_a_child(lambda: _start_child(database, account, scanner))
    if failure is not None:
        raise ConfigError(f"--processes: a child could not start: {failure}")


async def _serve(server: SpamdServer, listening: list[socket.socket],
                 reload: Callable[[Scanner], Scanner | None] | None,
                 database_back: Callable[[Scanner], Scanner | None], parent: int | None = None,
                 hangup: threading.Event | None = None) -> None:
    """Answer requests until SIGTERM or SIGINT; SIGHUP reloads with `reload` (a child of
    --processes has none: its parent reloads), as does one that came while it started
    (`hangup`), and a child stops when `parent` is gone."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=server.max_children,
                                                 thread_name_prefix="spamkit-spamd"))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    report_fatal_signals()

    if reload is not None:
        async def reread() -> None:
            """SIGHUP: the configuration, rules and lists read again (on a worker thread: a
            rule set may take seconds to compile); requests go on with the old scanner until
            the new one is ready. A broken configuration changes nothing."""
            assert reload is not None
            scanner = await loop.run_in_executor(None, reload, server.service.scanner)
            if scanner is not None:
                server.service.scanner = scanner
                _log.info("reload: configuration and rules (%d) read again", scanner.rules.report.loaded)

        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reread()))
        if hangup is not None and hangup.is_set():
            loop.create_task(reread())

    async def watch_database() -> None:
        """A token database that could not be used is tried again (DatabaseWatch), on a
        worker thread: opening and checking it may take a second. A child also looks
        for its parent: killed with -9, it cannot pass SIGTERM on."""
        while True:
            await asyncio.sleep(1)
            if parent is not None and parent_gone(parent):
                _log.warning("spamd: the parent process (pid %d) is gone; stopping", parent)
                stop.set()
                return
            scanner = await loop.run_in_executor(None, database_back, server.service.scanner)
            if scanner is not None:
                server.service.scanner = scanner

    watching = loop.create_task(watch_database())
    try:
        await server.serve(listening, stop)
    finally:
        watching.cancel()
    _log.info("spamd: stopped")


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.stat(path).st_mode)
