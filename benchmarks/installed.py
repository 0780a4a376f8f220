"""spamkit as `pip install .` installs it, for the commands the benchmark times.

Every timed command is a new process, so what the interpreter does before spamkit's own
code runs counts against spamkit. Run from this checkout, that includes the `.pth` files
of the interpreter's site-packages: the editable install's import finder and, on these
machines, a sandbox's hook that imports certifi into every Python process. An installed
spamkit pays for neither: `python -c pass` took 50-80 ms there against 10-20 ms in a
virtual environment of its own (2026-12-07). So the timed spamkit commands run from a
virtual environment made for the run, with the package installed from this tree (its C
extensions built and its modules byte-compiled, as pip does) and its dependencies at the
versions this interpreter has, so that only the install differs. Profiles and accuracy
figures computed inside this process still use the checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PINNED = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*==\S+")

_python: str | None = None


def install(workdir: Path) -> str:
    """Make `workdir/installed`, a virtual environment with spamkit installed from this
    tree, and have `python()` give its interpreter from now on."""
    global _python
    venv = workdir / "installed"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    pins = [line for line in frozen if _PINNED.fullmatch(line) and not line.lower().startswith("spamkit==")]
    constraints = workdir / "installed-constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    interpreter = venv / "bin" / "python"
    print(f"installing spamkit from {ROOT} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--constraint", str(constraints), str(ROOT)], check=True)
    _python = str(interpreter)
    return _python


def python() -> str:
    """The interpreter that timed spamkit commands run under: the installed one once
    `install` has run, else this one (a module run on its own, a test). Run it from a
    directory without spamkit in it (`-c` and `-m` put the current one first on the path)."""
    return _python or sys.executable


def spamkit() -> list[str]:
    """The `spamkit` command: the installed console script, as users run it (its
    directory, not the current one, goes first on the path), else `python -m spamkit`."""
    return [str(Path(_python).parent / "spamkit")] if _python else [sys.executable, "-m", "spamkit"]
