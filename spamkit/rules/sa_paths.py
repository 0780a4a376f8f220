"""Where SpamAssassin reads its default rules from, so that a RulePaths entry naming
them reads what `spamassassin` reads.

Debian's package puts its rules in /usr/share/spamassassin, as they were when the
package was built. `sa-update` (Debian's spamassassin-maintenance timer runs it each
day) writes newer ones into /var/lib/spamassassin/VERSION, VERSION being the installed
SpamAssassin's ("4.000001" for 4.0.1). SpamAssassin then reads that directory instead of
its package's (Mail::SpamAssassin's @default_rules_path: the first that exists). Without
this, RulePaths = ["/usr/share/spamassassin"] gave spamkit the package's rules while
`spamassassin` ran the day's.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE_RULES = Path("/usr/share/spamassassin")  # DEF_RULES_DIR
UPDATES = Path("/var/lib/spamassassin")  # LOCAL_STATE_DIR, where sa-update writes
MODULE = Path("/usr/share/perl5/Mail/SpamAssassin.pm")  # (Debian's; its $VERSION names the directory)

_VERSION = re.compile(rb'^\s*our\s+\$VERSION\s*=\s*"(\d+\.\d{6})"\s*;', re.MULTILINE)


def installed_version(module: Path = MODULE) -> str | None:
    """The installed SpamAssassin's version as sa-update names its directory
    ("4.000001"), from its Perl module; None without one."""
    try:
        found = _VERSION.search(module.read_bytes())
    except OSError:
        return None
    return found.group(1).decode() if found else None


def rules_read_for(path: Path, package: Path | None = None, updates: Path | None = None,
                   module: Path | None = None) -> Path:
    """What SpamAssassin reads where `path` names its package's rules: sa-update's
    directory for the installed version once it holds rules, else `path` itself."""
    package, updates, module = package or PACKAGE_RULES, updates or UPDATES, module or MODULE
    try:
        if not path.is_dir() or not package.is_dir() or not path.samefile(package):
            return path
    except OSError:
        return path
    version = installed_version(module)
    if version is None:
        return path
    updated = updates / version
    try:
        if updated.is_dir() and any(updated.glob("*.cf")):
            return updated
    except OSError:  # (not ours to read: the package's rules, as before)
        pass
    return path
