"""`spamkit wbl add` holds in a running filter within seconds, with no reload.

Before, `serve` (and `spamd`) kept the lists they read at start until a SIGHUP: an
administrator who blacklisted a sender, as SME's WBL panel does, went on receiving that
sender's mail untagged and saw the command as broken."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink

def send(port: int, subject: str) -> None:
    message = f"From: pills@spam.example\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("pills@spam.example", ["alice@example.org"], message.encode())


@pytest.mark.skipif(os.geteuid() != 0, reason="serve gives up root only when started as root")
def test_serve_as_its_user_takes_a_wbl_add_without_a_reload(sink: Sink, open_tmp: Path) -> None:
    base = open_tmp  # (the list file is read again as nobody)
    config = base / "spamkit.toml"
    config.write_text("UseBayes = false\n")
    log = base / "serve.log"
    with log.open("wb") as written:
        process, port = start_serve(sink.port, base / "db", config, stderr=written.fileno())
        try:
            send(port, "before")
            added = subprocess.run([sys.executable, "-m", "spamkit", "wbl", "add", "black",
                                    "*@spam.example", "--config", str(config)],
                                   capture_output=True, text=True, timeout=60)
            assert added.returncode == 0, added.stderr
            time.sleep(2.5)  # (the file is looked at every 2 s)
            send(port, "after")
        finally:
            assert stop_serve(process)[0] == 0
    # (smtp-sink's file names do not keep the order of arrival)
    [first] = [m for m in sink.messages_as_sent() if b"Subject: before" in m]
    [second] = [m for m in sink.messages_as_sent() if b"Subject: after" in m]
    assert b"X-Spam-Flag: YES" not in first and b"USER_IN_BLACKLIST" not in first
    assert b"X-Spam-Flag: YES" in second and b"USER_IN_BLACKLIST" in second
    assert f"lists: {base / 'lists'} changed: 1 entries now" in log.read_text()
