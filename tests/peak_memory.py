"""The peak memory of a command, measured exactly: the command runs as the only child of
a small Python process, whose RUSAGE_CHILDREN then holds that command's peak resident
set (the high-water mark the kernel kept, not a sample)."""

from __future__ import annotations

import json
import subprocess
import sys

_RUNNER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True)
print(json.dumps({"status": done.returncode, "stdout": done.stdout.decode("utf-8", "replace"),
                  "stderr": done.stderr.decode("utf-8", "replace"),
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_measured(command: list[str], env: dict[str, str], timeout: float = 600
                 ) -> tuple[subprocess.CompletedProcess[str], float]:
    """(the command's outcome, its peak resident memory in MiB)."""
    runner = subprocess.run([sys.executable, "-c", _RUNNER, *command], capture_output=True, text=True,
                            env=env, timeout=timeout, check=True)
    out = json.loads(runner.stdout)
    done = subprocess.CompletedProcess(command, out["status"], out["stdout"], out["stderr"])
    return done, out["peak_kib"] / 1024
