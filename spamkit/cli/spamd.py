"""`spamkit spamd`: spamkit behind SpamAssassin's spamd protocol (smtpfilter.spamd)."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from spamkit.cli import config_option, db_option, resolve_db_path
from spamkit.cli.serve import account_to_run_as, become, daemon_options, host_port
from spamkit.config import load_config
from spamkit.errors import ConfigError
from spamkit.store.watch import DatabaseWatch
from spamkit.verdict import Scanner, reload_logged

_log = logging.getLogger("spamkit.spamd")

if TYPE_CHECKING:
    from smtpfilter.spamd import SpamdServer


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
@click.option("--allow-tell", is_flag=True,
              help="Accept TELL (spamc -L spam|ham|forget): learning from whoever can connect.")
@click.option("--pyzor", "ask_pyzor", is_flag=True,
              help="Ask PyzorServers about each message (PYZOR_CHECK), as SpamAssassin's spamd "
                   "does with its Pyzor plugin; the answer is written in X-Spamkit-Pyzor.")
@daemon_options
@db_option
@config_option
def spamd(listen: str, socket_path: str | None, socket_mode: str, allowed_ips: str,
          max_children: int, allow_tell: bool, ask_pyzor: bool, autolearn: bool, run_as: str | None,
          db_path: str | None, config_path: str | None) -> None:
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
    """
    from smtpfilter.networks import Networks
    from smtpfilter.spamd import SpamdServer, SpamdService
    from spamkit.pyzor import require_package

    _refuse_ignored_options(socket_path is not None)
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(config_path)
    # one it cannot use does not stop it: WhenDatabaseDown, and tries every DatabaseRetry s
    database = DatabaseWatch(resolve_db_path(db_path, config_path), config["DatabaseRetry"], _log)
    if config["UseBayes"]:
        database.open()
    try:
        scanner = Scanner.from_config(config, database.store, database_down=database.down)
        scanner.rules.prepare_multiscan()  # compile (or load) now: no message waits for it
        scanner.warm_up()  # and what a scan loads on first use, while the files are readable
        service = SpamdService(scanner, allow_tell, autolearn, config["WhenDatabaseDown"], ask_pyzor)
        server = SpamdServer(service, allowed, max_children)

        asyncio.run(_serve(server, listen, socket_path, mode, account, max_children,
                           lambda current: reload_logged(current, config_path, database.store, _log),
                           database.refreshed))
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


async def _serve(server: SpamdServer, listen: str, socket_path: str | None, mode: int,
                 account: pwd.struct_passwd | None, max_children: int,
                 reload: Callable[[Scanner], Scanner | None],
                 database_back: Callable[[Scanner], Scanner | None]) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=max_children,
                                                 thread_name_prefix="spamkit-spamd"))
    if socket_path:
        if os.path.exists(socket_path) and not _is_socket(socket_path):
            raise ConfigError(f"--socket {socket_path}: a file that is not a socket is there")
        if os.path.exists(socket_path):
            os.unlink(socket_path)  # a socket left by a spamd that was killed
        try:
            listening = await asyncio.start_unix_server(server.connected, socket_path)
        except OSError as error:  # (asyncio's has no file name: "No such file or directory" alone)
            raise OSError(error.errno, error.strerror, socket_path) from None
        os.chmod(socket_path, mode)
        if account is not None:
            os.chown(socket_path, account.pw_uid, account.pw_gid)
        where = socket_path
    else:
        host, port = host_port(listen)
        listening = await asyncio.start_server(server.connected, host, port)
        where = f"{host}:{port}"
    if account is not None:
        try:
            become(account, server.service.scanner)
        except (OSError, ConfigError):
            listening.close()  # never scan as root, nor with a scanner that cannot scan
            raise
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def reread() -> None:
        """SIGHUP: the configuration, rules and lists read again (on a worker thread: a
        rule set may take seconds to compile); requests go on with the old scanner until
        the new one is ready. A broken configuration changes nothing."""
        scanner = await loop.run_in_executor(None, reload, server.service.scanner)
        if scanner is not None:
            server.service.scanner = scanner
            _log.info("reload: configuration and rules (%d) read again", scanner.rules.report.loaded)

    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reread()))

    async def watch_database() -> None:
        """A token database that could not be used is tried again (DatabaseWatch), on a
        worker thread: opening and checking it may take a second."""
        while True:
            await asyncio.sleep(1)
            scanner = await loop.run_in_executor(None, database_back, server.service.scanner)
            if scanner is not None:
                server.service.scanner = scanner

    watching = loop.create_task(watch_database())
    click.echo(f"spamkit spamd: listening on {where}"
               f"{f', running as {account.pw_name}' if account is not None else ''}", err=True)
    async with listening:
        await stop.wait()
        watching.cancel()
        listening.close()  # no new connections; those in progress finish
        while server.in_flight:
            await asyncio.sleep(0.05)
    if socket_path:
        try:
            os.unlink(socket_path)
        except FileNotFoundError:
            pass
        except OSError as error:  # its directory is not ours to change: the next start removes it
            logging.getLogger("spamkit.spamd").warning("spamd: could not remove %s: %s",
                                                       socket_path, error)


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.stat(path).st_mode)
