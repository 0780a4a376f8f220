"""The cron and systemd files run the commands they name."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands() -> list[list[str]]:
    out = []
    for line in (ROOT / "contrib" / "cron" / "spamkit").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(shlex.split(line.split(None, 6)[6].split(">")[0]))
    for line in (ROOT / "contrib" / "systemd" / "spamkit-learn.service").read_text().splitlines():
        if line.startswith("ExecStart="):
            out.append(shlex.split(line.split("=", 1)[1]))
    return out


def test_each_scheduled_command_runs(tmp_path: Path) -> None:
    found = commands()
    assert [c[1] for c in found] == ["learn", "expire-junk", "make-folders", "dmarc-reports", "learn"]
    (tmp_path / "users" / "alice" / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'MaildirPattern = "{tmp_path}/users/{{user}}/Maildir"\n'
                      f'Database = "{tmp_path / "db"}"\n')
    env = dict(os.environ, SPAMKIT_CONFIG=str(config))
    for command in found:
        assert command[0] == "/usr/local/bin/spamkit"
        result = subprocess.run([sys.executable, "-m", "spamkit", *command[1:]], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        if command[1] == "make-folders":  # a new user's folders are made, and said; then nothing
            assert result.stdout.splitlines() == [f"alice: made {name}" for name in ("LearnAsSpam", "LearnAsHam",
                                                                                   "junkmail")]
            result = subprocess.run([sys.executable, "-m", "spamkit", *command[1:]], env=env,
                                    capture_output=True, text=True, timeout=120)
        assert result.stdout == "" or command[1] == "expire-junk"  # --quiet: cron mails nothing


def test_timer_schedules_the_service() -> None:
    timer = (ROOT / "contrib" / "systemd" / "spamkit-learn.timer").read_text()
    assert "OnCalendar=*:0/30" in timer and "WantedBy=timers.target" in timer
