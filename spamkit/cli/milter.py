"""`spamkit milter`: the filter chain for Postfix's smtpd_milters, so the MTA keeps the
SMTP session and asks spamkit at each stage. (Sendmail's INPUT_MAIL_FILTER speaks the same
protocol; it was not tried.)"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from spamkit.cli import config_option, db_option
from spamkit.cli.hangup import hangups_held
from spamkit.cli.serve import (SHUTDOWN_WAIT, account_to_run_as, become, daemon_options, daemon_scanner,
                               database_back, host_port, reload_chain, report_fatal_signals)
from spamkit.cli.spamd import stop_listening, tcp_listeners, unix_listener
from spamkit.config import load_config
from spamkit.store.watch import DatabaseWatch
from spamkit.verdict import Scanner

if TYPE_CHECKING:
    from smtpfilter.milter import MilterHandler

_log = logging.getLogger("spamkit.smtpfilter")
# what a reload reads but cannot apply here: the milter has no sessions or TLS of its own
SET_AT_START = ("UseBayes", "MetricsListen")


@click.command()
@click.option("--listen", default="127.0.0.1:8897", show_default=True,
              help="Address to listen on (smtpd_milters = inet:127.0.0.1:8897).")
@click.option("--socket", "socket_path", metavar="PATH",
              help="Listen on this Unix socket instead (smtpd_milters = unix:PATH; inside "
                   "Postfix's chroot, a path under /var/spool/postfix).")
@click.option("--socket-mode", default="660", show_default=True,
              help="The Unix socket's mode (octal); its group should be one Postfix is in.")
@daemon_options
@db_option
@config_option
def milter(listen: str, socket_path: str | None, socket_mode: str, autolearn: bool, run_as: str | None,
           db_path: str | None, config_path: str | None) -> None:
    """Answer the MTA's milter protocol with the SMTP filter's checks.

    Postfix keeps the client's session and asks at connect, HELO, MAIL, each RCPT and the
    end of the message; a refusal is the reply Postfix gives, and the headers the filters
    add or change (X-Spam-Status, a tagged subject) are written into Postfix's copy.
    Postfix's own settings (size, TLS, AUTH, its queue) stay Postfix's. On SIGHUP it reads
    the configuration, rules and lists again; SIGTERM lets the messages being checked
    finish. Started as root, it needs --user. A token database it cannot use gets
    WhenDatabaseDown, as the SMTP filter's. Set milter_default_action = tempfail in
    Postfix, so mail waits while the milter is down.
    """
    hangup = hangups_held()
    from smtpfilter.metrics import Metrics
    from smtpfilter.milter import MilterHandler
    from smtpfilter.plugins import build_chain, start_warnings

    given = click.get_current_context().get_parameter_source
    if socket_path is not None and given("listen") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--listen with --socket: the milter listens on one or the other")
    if socket_path is None and given("socket_mode") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--socket-mode is for --socket")
    try:
        mode = int(socket_mode, 8)
    except ValueError:
        raise click.BadParameter(f"{socket_mode!r} is not an octal mode", param_hint="--socket-mode") from None
    account = account_to_run_as(run_as, "milter")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(config_path)
    database, scanner = daemon_scanner(config, db_path, config_path, _log)
    try:
        metrics = Metrics()
        if config["MetricsListen"]:
            metrics.serve(*host_port(config["MetricsListen"]))
        handler = MilterHandler(build_chain(config, scanner, autolearn), metrics, config["ScanBudget"])
        warnings = start_warnings(config)
        listening = unix_listener(socket_path, mode, account) if socket_path else tcp_listeners(listen)
        try:
            if account is not None:
                become(account, scanner)  # never scan as root
            for warning in warnings:
                _log.warning("%s", warning)
            click.echo(f"spamkit milter: listening on {socket_path or listen}"
                       f"{f', running as {account.pw_name}' if account is not None else ''}", err=True)
            # (returns once the checks still running have ended too: one answered 451 at
            # ScanBudget goes on until its own filter's timeout, PyzorTimeout say)
            asyncio.run(_serve(handler, listening, scanner, config_path, database, autolearn, hangup))
        finally:
            stop_listening(listening, socket_path)
    finally:
        database.close()
    _log.info("stopped")


async def _serve(handler: MilterHandler, listening: list[socket.socket], scanner: Scanner,
                 config_path: str | None, database: DatabaseWatch, autolearn: bool,
                 hangup: threading.Event) -> None:
    """Answer the MTA until SIGTERM or SIGINT; SIGHUP reloads on a worker thread (sessions
    go on with the chain in force until the new one is built), as does one that came while
    it started (`hangup`)."""
    loop = asyncio.get_running_loop()
    # envelope stages that may wait (DNS) and every end of message run on these threads
    loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="spamkit-milter"))
    stop = asyncio.Event()
    stopped_by: list[str] = []

    def stopping(signum: signal.Signals) -> None:
        stopped_by.append(signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping, signum)
    report_fatal_signals()
    current = [scanner]

    async def reread() -> None:
        current[0] = await loop.run_in_executor(
            None, lambda: reload_chain(handler, current[0], config_path, database.store, autolearn, None,
                                       SET_AT_START, "milter"))

    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reread()))
    if hangup.is_set():
        loop.create_task(reread())
    connections: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await handler.serve_connection(reader, writer)
        finally:
            connections.discard(task)

    servers = [await asyncio.start_server(connection, sock=listener) for listener in listening]
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                fresh = await loop.run_in_executor(None, database.refreshed, current[0])
                if fresh is not None:
                    current[0] = database_back(handler, fresh, autolearn)
    finally:
        for server in servers:
            server.close()
        # (a message being checked is answered first; the MTA asks again for the rest)
        _log.info("%s: stopping. New connections are refused; %d message(s) being checked get up "
                  "to %g s to be answered", stopped_by[0] if stopped_by else "stop", handler.in_flight,
                  SHUTDOWN_WAIT)
        deadline = loop.time() + SHUTDOWN_WAIT
        while handler.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if handler.in_flight:  # (the MTA applies milter_default_action: tempfail, as the unit's note says)
            _log.warning("%d message(s) still unanswered after %g s: their connections are closed, and "
                         "the MTA applies milter_default_action to them", handler.in_flight, SHUTDOWN_WAIT)
        for task in list(connections):
            task.cancel()
