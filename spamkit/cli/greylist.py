"""`spamkit greylist list|pass|forget`: what the greylist filter is holding back, a way to
let a sender through at once (a customer on the phone whose mail server retries only
hourly), and a way to greylist again what passed (a network that earned its exemption and
then sent spam).
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from smtpfilter.logtext import printable
from spamkit.cli import config_option, json_option
from spamkit.cli.filterstore import opened_store
from spamkit.config import load_config

if TYPE_CHECKING:
    from smtpfilter.plugins.greylist import GreylistStore
    from smtpfilter.recordstore import Record

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@click.group()
def greylist() -> None:
    """The greylist filter's triplets (client network, sender, recipient): list them, let
    a waiting sender pass, forget them."""


@contextmanager
def _greylist_store(config_path: str | None) -> Iterator[tuple[GreylistStore | None, str]]:
    """The store the filter uses, with its configured times; None when there is none yet."""
    from smtpfilter.plugins import greylist_database, greylist_store

    config = load_config(config_path)
    with opened_store(greylist_database(config), lambda location: greylist_store(config, location)) \
            as opened:
        yield opened


def _triplet_row(store: GreylistStore, record: Record) -> dict[str, Any]:
    waiting = not record["passed"]
    first = float(record["first"])
    return {"client": record["client"], "sender": record["sender"], "recipient": record["recipient"],
            "first": round(first), "tries": int(record["tries"]), "waiting": waiting,
            "passes_at": round(first + store.delay) if waiting else None,
            "passed": None if waiting else round(float(record["passed"])),
            "seen": round(float(record["seen"])),
            "expires": round(first + store.delay + store.retry_window if waiting
                             else float(record["seen"]) + store.pass_lifetime)}


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


@greylist.command(name="list")
@click.option("--waiting", is_flag=True, help="Only the triplets still waiting for their retry.")
@config_option
@json_option
def list_(waiting: bool, config_path: str | None, as_json: bool) -> None:
    """Every triplet the filter knows and has not yet forgotten: when it was first tried,
    how often, and whether it still waits (from when its retry passes) or has passed.
    The waiting come first, the newest first. Then the client networks whose triplets
    have passed, and which of them GreylistAutoWhitelist exempts."""
    now = time.time()
    with _greylist_store(config_path) as (store, where):
        triplets: list[dict[str, Any]] = []
        networks: list[dict[str, Any]] = []
        unnamed = 0
        if store is not None:
            for _, record in store.triplets(now):
                if "sender" in record:
                    triplets.append(_triplet_row(store, record))
                else:
                    unnamed += 1  # written before records named their triplet
            networks = [{"network": network, "passes": int(record["passes"]),
                         "seen": round(float(record["seen"])),
                         "whitelisted": 0 < store.auto_whitelist <= int(record["passes"])}
                        for network, record in store.networks(now)]
    if waiting:
        triplets = [row for row in triplets if row["waiting"]]
    triplets.sort(key=lambda row: (not row["waiting"], -row["first"], row["sender"], row["recipient"]))
    networks.sort(key=lambda row: (not row["whitelisted"], -row["passes"], row["network"]))
    if as_json:
        click.echo(json.dumps({"database": where, "triplets": triplets, "networks": networks,
                               "unnamed": unnamed}))
        return
    _print_list(triplets, networks, unnamed, waiting, where)


def _print_list(triplets: list[dict[str, Any]], networks: list[dict[str, Any]], unnamed: int,
                waiting: bool, where: str) -> None:
    if not triplets:
        click.echo(f"greylist holds no {'waiting ' if waiting else ''}triplet ({where})", err=True)
    else:
        click.echo(f"{'client':<20} {'sender':<32} {'recipient':<32} {'first tried':<16} "
                   f"{'tries':>5}  state")
        for row in triplets:
            state = f"waits; passes from {_when(row['passes_at'])}" if row["waiting"] \
                else f"passed {_when(row['passed'])}"
            # (addresses as a client sent them: anything not printable escaped, as the log has them)
            click.echo(f"{printable(row['client']):<20} {printable(row['sender']) or '<>':<32} "
                       f"{printable(row['recipient']):<32} {_when(row['first']):<16} {row['tries']:>5}  {state}")
    if unnamed:
        click.echo(f"(and {unnamed} triplet{'' if unnamed == 1 else 's'} recorded without "
                   "addresses by an earlier spamkit, forgotten within GreylistPassDays)", err=True)
    if waiting or not networks:
        return
    click.echo("")
    click.echo(f"{'client network':<43} {'passed':>6}  {'last sent':<16}  exempt")
    for row in networks:
        click.echo(f"{row['network']:<43} {row['passes']:>6}  {_when(row['seen']):<16}  "
                   f"{'yes' if row['whitelisted'] else 'no'}")


@greylist.command(name="pass")
@click.argument("senders", nargs=-1, required=True, metavar="SENDER...")
@click.option("--rcpt", "recipients", multiple=True, metavar="ADDRESS",
              help="Only the triplets to this recipient (may be repeated).")
@click.option("--client", "clients", multiple=True, metavar="ADDRESS|NETWORK",
              help="Only the triplets of clients in this address or network (may be repeated).")
@config_option
@json_option
def pass_(senders: tuple[str, ...], recipients: tuple[str, ...], clients: tuple[str, ...],
          config_path: str | None, as_json: bool) -> None:
    """Let the waiting triplets of these senders pass: their next retry is taken at once,
    and the ones after it for GreylistPassDays. SENDER is an address (its digits match
    any, as the filter keeps a sender), @domain or a domain for all of its senders, a
    pattern with * and ?, or <> for bounces. Only triplets already tried can be passed:
    a sender not yet seen is not waiting. To exempt a sender for good, add it to
    WhitelistSenders."""
    networks = [_network(text) for text in clients]
    wanted_recipients = {text.strip().strip("<>").lower() for text in recipients}
    passed: list[dict[str, str]] = []
    matched: set[str] = set()
    with _greylist_store(config_path) as (store, where):
        if store is not None:
            passed, matched = _let_pass(store, senders, wanted_recipients, networks)
    unknown = [sender for sender in senders if sender not in matched]
    if as_json:
        click.echo(json.dumps({"database": where, "passed": passed, "unknown": unknown}))
        return
    _say_each("passed", passed)
    for sender in unknown:
        click.echo(f"nothing waiting from: {sender} ({where})", err=True)


def _say_each(done: str, triplets: list[dict[str, str]]) -> None:
    """One line a triplet acted on, its addresses as the log writes them."""
    for row in triplets:
        click.echo(f"{done}: {printable(row['sender']) or '<>'} -> {printable(row['recipient'])} "
                   f"from {printable(row['client'])}", err=True)


def _let_pass(store: GreylistStore, senders: tuple[str, ...], recipients: set[str],
              networks: list[Network]) -> tuple[list[dict[str, str]], set[str]]:
    """Pass the waiting triplets the arguments cover: (each one passed, the SENDERs that
    covered one)."""
    now = time.time()
    return _each_covered(store, senders, recipients, networks, now, waiting_only=True,
                         act=lambda key: store.let_pass(key, now))


def _each_covered(store: GreylistStore, senders: tuple[str, ...], recipients: set[str],
                  networks: list[Network], now: float, waiting_only: bool,
                  act: Callable[[str], bool]) -> tuple[list[dict[str, str]], set[str]]:
    """`act` on each named triplet the arguments cover (no SENDER: every sender's): (each
    one it acted on, the SENDERs that covered one)."""
    done: list[dict[str, str]] = []
    matched: set[str] = set()
    for key, record in list(store.triplets(now)):
        if (waiting_only and record["passed"]) or "sender" not in record:
            continue
        if recipients and record["recipient"] not in recipients:
            continue
        if networks and not _within(record["client"], networks):
            continue
        who = [sender for sender in senders if _sender_matches(sender, record["sender"])]
        if (who or not senders) and act(key):
            matched.update(who)
            done.append({"client": record["client"], "sender": record["sender"],
                         "recipient": record["recipient"]})
    return done, matched


@greylist.command()
@click.argument("senders", nargs=-1, metavar="[SENDER...]")
@click.option("--rcpt", "recipients", multiple=True, metavar="ADDRESS",
              help="Only the triplets to this recipient (may be repeated).")
@click.option("--client", "clients", multiple=True, metavar="ADDRESS|NETWORK",
              help="Only the triplets of clients in this address or network (may be repeated); "
                   "with no SENDER, also the networks' count of passed triplets.")
@config_option
@json_option
def forget(senders: tuple[str, ...], recipients: tuple[str, ...], clients: tuple[str, ...],
           config_path: str | None, as_json: bool) -> None:
    """Forget triplets, waiting or passed: their next attempt is greylisted as a new one.
    SENDER is as for `greylist pass`. With --client alone (no SENDER, no --rcpt), every triplet of those
    clients is forgotten, and so is their networks' count of passed triplets, which ends
    a GreylistAutoWhitelist exemption: for a network that earned it and then sent spam.
    At least one SENDER or --client is needed."""
    if not senders and not clients:
        raise click.UsageError("name a SENDER or a --client: forgetting everything is not "
                               "what this is for (remove the greylist database for that)")
    networks = [_network(text) for text in clients]
    wanted_recipients = {text.strip().strip("<>").lower() for text in recipients}
    forgotten: list[dict[str, str]] = []
    forgotten_networks: list[str] = []
    matched: set[str] = set()
    with _greylist_store(config_path) as (store, where):
        if store is not None:
            now = time.time()
            forgotten, matched = _each_covered(store, senders, wanted_recipients, networks, now,
                                               waiting_only=False, act=store.forget)
            if not senders and not recipients:
                forgotten_networks = [network for network, _ in list(store.networks(now))
                                      if _within(network, networks) and store.forget(f"c:{network}")]
    unknown = [sender for sender in senders if sender not in matched]
    if as_json:
        click.echo(json.dumps({"database": where, "forgotten": forgotten, "networks": forgotten_networks,
                               "unknown": unknown}))
        return
    _say_each("forgotten", forgotten)
    for network in forgotten_networks:
        click.echo(f"forgotten: client network {network} and its passes", err=True)
    for sender in unknown:
        click.echo(f"not known to the greylist: {sender} ({where})", err=True)
    if not forgotten and not forgotten_networks and not senders:
        click.echo(f"the greylist knows nothing of {', '.join(clients)} ({where})", err=True)


def _sender_matches(given: str, kept: str) -> bool:
    """Whether a SENDER argument covers a triplet's sender (as sender_pattern keeps it)."""
    from smtpfilter.plugins.envelope import address_matches
    from smtpfilter.plugins.greylist import sender_pattern

    entry = given.strip().lower()
    if entry in ("<>", ""):
        return kept == ""
    if not kept:
        return False
    if "@" in entry and not entry.startswith("@") and not any(mark in entry for mark in "*?["):
        return sender_pattern(entry) == kept
    return address_matches(entry, kept)


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip().strip("[]"), strict=False)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an IP address or network",
                                 param_hint="--client") from None


def _within(client: str, networks: list[Network]) -> bool:
    """Whether a triplet's client (a network, or an address when GreylistBySubnet is
    false) overlaps one of `networks`."""
    try:
        kept = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return False
    return any(kept.version == network.version and kept.overlaps(network) for network in networks)
