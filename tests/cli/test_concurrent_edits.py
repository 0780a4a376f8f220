"""Commands that read a file, change it and replace it, run at once: every change stays.
`config set` and `wbl add` each replaced the file with what it had read plus its own
change, so of 20 run at once (a script with `&`, two administrators) only 8-9 changes
were kept, and every one of them had said it was done (spamkit.atomicfile.editing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNS = 16


def _at_once(commands: list[list[str]]) -> None:
    running = [subprocess.Popen([sys.executable, "-m", "spamkit", *command], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for command in commands]
    for process in running:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()


def test_wbl_adds_and_config_sets_at_once_all_stay(tmp_path: Path) -> None:
    config = tmp_path / "spamkit.toml"
    config.write_text("UseBuiltinRules = false\n")
    _at_once([["wbl", "add", "white", f"sender{n}@example.com", "--config", str(config)] for n in range(RUNS)]
             + [["config", "set", "SortSpam", "false", "--user", f"user{n}", "--config", str(config)]
                for n in range(RUNS)])
    listed = json.loads(subprocess.run([sys.executable, "-m", "spamkit", "wbl", "list", "--json",
                                        "--config", str(config)], capture_output=True, text=True,
                                       timeout=120).stdout)
    assert sorted(entry["pattern"] for entry in listed) == sorted(f"sender{n}@example.com" for n in range(RUNS))
    shown = json.loads(subprocess.run([sys.executable, "-m", "spamkit", "config", "show", "--json",
                                       "--config", str(config)], capture_output=True, text=True,
                                      timeout=120).stdout)
    assert shown["UseBuiltinRules"] is False
    text = config.read_text()
    assert all(f"[user.user{n}]" in text for n in range(RUNS)), text

    _at_once([["wbl", "remove", "white", f"sender{n}@example.com", "--config", str(config)]
              for n in range(0, RUNS, 2)]
             + [["config", "unset", "SortSpam", "--user", f"user{n}", "--config", str(config)]
                for n in range(0, RUNS, 2)])
    left = json.loads(subprocess.run([sys.executable, "-m", "spamkit", "wbl", "list", "--json",
                                      "--config", str(config)], capture_output=True, text=True,
                                     timeout=120).stdout)
    assert sorted(entry["pattern"] for entry in left) == sorted(f"sender{n}@example.com"
                                                                for n in range(1, RUNS, 2))
    text = config.read_text()
    assert [n for n in range(RUNS) if f"[user.user{n}]" in text] == list(range(1, RUNS, 2))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lists", "spamkit.toml"]  # (no lock file)
