"""`spamkit dkim keygen|dns`: the keys the dkimsign filter signs with, and the DNS records
that publish them (SME's dkim_keys directory and its qpsmtpd-print-dns)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spamkit.cli import config_option, json_option
from spamkit.config import load_config


def _key_root(config_path: str | None) -> tuple[Path, list[str]]:
    from smtpfilter.dkimkeys import key_root

    config = load_config(config_path)
    return key_root(config), list(config["LocalDomains"])


@click.group()
def dkim() -> None:
    """Make DKIM signing keys and print the DNS records that publish them."""


@dkim.command()
@click.argument("domain", required=False)
@click.option("--selector", default="default", show_default=True, help="The selector's name.")
@click.option("--bits", type=click.IntRange(1024, 8192), default=2048, show_default=True)
@config_option
def keygen(domain: str | None, selector: str, bits: int, config_path: str | None) -> None:
    """Make a key pair for DOMAIN, or the default pair that signs every domain without one."""
    from smtpfilter.dkimkeys import generate

    root, _ = _key_root(config_path)
    directory = generate(root, domain, selector, bits)
    click.echo(f"made {directory}/private (0400) and public; publish it with "
               f"`spamkit dkim dns {domain or '<domain>'}`", err=True)


@dkim.command()
@click.argument("domain", required=False)
@config_option
@json_option
def dns(domain: str | None, config_path: str | None, as_json: bool) -> None:
    """The DNS records for DOMAIN (default: the first LocalDomains entry): its DKIM key, and
    SPF and DMARC records to adjust before publishing, as a bind zone file writes them."""
    from smtpfilter.dkimkeys import dns_record

    root, local_domains = _key_root(config_path)
    if domain is None:
        if not local_domains:
            raise click.UsageError("give a DOMAIN (LocalDomains is empty)")
        domain = local_domains[0]
    name, value = dns_record(root, domain)
    spf = "v=spf1 mx a -all"
    dmarc = f"v=DMARC1; p=none; adkim=s; aspf=r; rua=mailto:dmarc-feedback@{domain}; pct=100"
    if as_json:
        click.echo(json.dumps({"domain": domain, "dkim": {"name": name, "value": value},
                               "spf": {"name": "@", "value": spf},
                               "dmarc": {"name": "_dmarc", "value": dmarc}}))
        return
    # a TXT string holds at most 255 bytes: a 2048-bit key takes two
    pieces = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    click.echo(f"; DNS records for {domain}. The DKIM record can be published as it is; adjust\n"
               f"; the SPF and DMARC ones to your mail (and create the report address).")
    click.echo(f"{name} IN TXT ( {pieces} )")
    click.echo(f'@ IN TXT "{spf}"')
    click.echo(f'_dmarc IN TXT "{dmarc}"')
