"""`spamkit dmarc-reports [--send]`: the daily DMARC aggregate reports (SME's DMARCReporting)."""

from __future__ import annotations

import json
import smtplib
import time

import click

from spamkit.cli import config_option, json_option
from spamkit.config import load_config
from spamkit.errors import ConfigError


@click.command(name="dmarc-reports")
@click.option("--send", is_flag=True, help="Mail the reports (else only list them).")
@config_option
@json_option
def dmarc_reports(send: bool, config_path: str | None, as_json: bool) -> None:
    """Each domain's aggregate report for the finished days (UTC) that the dmarc filter
    recorded, to the addresses its policy names (rua=); with --send, mailed through
    ReportSmtpServer from ReportFrom, and forgotten once sent. Run it daily from cron.
    Rows older than a week are dropped, sent or not."""
    from smtpfilter.dmarcreports import (KEEP_DAYS, ReportStore, allowed_recipients, new_report_id,
                                         report_message, report_xml)
    from smtpfilter.plugins import configured_dns, our_name, report_database
    from trainer.sweep import smtp_server

    config = load_config(config_path)
    path = report_database(config)
    if not path.exists():  # nothing recorded yet (no dmarc filter, or DmarcReporting off)
        if as_json:
            click.echo(json.dumps({"reports": [], "dropped": 0}))
        return
    if send and config.origins["ReportFrom"] == "default":
        raise ConfigError(f"ReportFrom is {config['ReportFrom']}, which no domain owner can "
                          "answer: set it to an address of yours before sending DMARC reports "
                          "(spamkit config set ReportFrom dmarc-reports@example.org)")
    store = ReportStore(path)
    receiver = config["DmarcReportOrg"] or our_name(config)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    out = []
    try:
        dns = configured_dns(config)
        for report in store.reports(before_day=today):
            recipients, refused = allowed_recipients(report, dns)
            entry: dict[str, object] = {
                "domain": report.policy_domain, "day": report.day, "rows": len(report.rows),
                "messages": sum(count for _, count in report.rows), "to": recipients,
                "refused": refused, "sent": False, "error": None}
            if send and recipients:
                report_id = new_report_id()
                xml = report_xml(report, receiver, config["ReportFrom"], report_id)
                message = report_message(report, xml, receiver, config["ReportFrom"], report_id,
                                         recipients)
                try:
                    with smtplib.SMTP(*smtp_server(config["ReportSmtpServer"]), timeout=30) as smtp:
                        smtp.send_message(message)
                except (OSError, smtplib.SMTPException) as error:
                    entry["error"] = f"{type(error).__name__}: {error}"
                else:
                    entry["sent"] = True
                    store.forget(report)
            elif send:
                store.forget(report)  # nobody may have it
            out.append(entry)
        cutoff = time.strftime("%Y-%m-%d", time.gmtime(time.time() - KEEP_DAYS * 86400))
        dropped = store.forget_before(cutoff) if send else 0
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"reports": out, "dropped": dropped}))
    else:
        for entry in out:
            state = ("sent" if entry["sent"] else f"not sent: {entry['error']}" if entry["error"]
                     else "to send" if entry["to"] else "no recipient")
            click.echo(f"{entry['day']} {entry['domain']}: {entry['messages']} messages, "
                       f"{entry['rows']} rows, to {', '.join(entry['to']) or '-'} ({state})")  # type: ignore[arg-type]
            for why in entry["refused"]:  # type: ignore[attr-defined]
                click.echo(f"  not to {why}")
        if dropped:
            click.echo(f"dropped {dropped} rows older than {KEEP_DAYS} days")
    if any(entry["error"] for entry in out):
        raise SystemExit(75)  # EX_TEMPFAIL: what was not sent stays for the next run
