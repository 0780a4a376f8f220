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


def test_systemd_reads_every_line_of_the_units() -> None:
    """A line systemd cannot parse (a misspelt key, a signal name it does not know) is
    dropped with a warning in a journal no one reads, and the unit runs without it:
    `systemd-analyze verify` says which. What it says of /usr/local/bin/spamkit, not
    installed here, is left out."""
    for unit in sorted((ROOT / "contrib" / "systemd").iterdir()):
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                                timeout=60)
        said = [line for line in (result.stdout + result.stderr).splitlines()
                if "Command /usr/local/bin/spamkit is not executable" not in line]
        assert said == [], unit.name


def test_timer_schedules_the_service() -> None:
    timer = (ROOT / "contrib" / "systemd" / "spamkit-learn.timer").read_text()
    assert "OnCalendar=*:0/30" in timer and "WantedBy=timers.target" in timer


def test_the_sa_update_hook_is_one_debians_maintenance_runs(tmp_path: Path) -> None:
    """contrib/sa-update-hooks.d/spamkit: Debian's spamassassin-maint runs the scripts in
    /etc/spamassassin/sa-update-hooks.d by `run-parts --lsbsysinit` after sa-update brought
    rules that passed lint. run-parts passes over a name it does not like, or a file that
    is not executable, without a word; this one it runs. The units it reloads are
    contrib/systemd's, each with a reload; where they are not running (no systemd here)
    it does nothing, says nothing and exits 0, so the maintenance run goes on."""
    hook = ROOT / "contrib" / "sa-update-hooks.d" / "spamkit"
    hooks = tmp_path / "sa-update-hooks.d"
    hooks.mkdir()
    (hooks / "spamkit").write_bytes(hook.read_bytes())
    (hooks / "spamkit").chmod(hook.stat().st_mode)
    listed = subprocess.run(["run-parts", "--test", "--lsbsysinit", str(hooks)], capture_output=True,
                            text=True, check=True)
    assert listed.stdout.split() == [str(hooks / "spamkit")]
    units = hook.read_text().split("for unit in", 1)[1].split(";", 1)[0].split()
    assert units == ["spamkit-filter", "spamkit-milter", "spamkit-spamd"]
    for unit in units:
        text = (ROOT / "contrib" / "systemd" / f"{unit}.service").read_text()
        # (and one that a reload ends before it holds SIGHUP is started again)
        assert "ExecReload=" in text and "RestartForceExitStatus=SIGHUP" in text.splitlines()
    ran = subprocess.run(["run-parts", "--lsbsysinit", str(hooks)], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}/nothing:/usr/bin:/bin"}, timeout=60)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
