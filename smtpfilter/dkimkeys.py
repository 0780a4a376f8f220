"""DKIM signing keys, laid out as SME Server lays them out (its /home/e-smith/dkim_keys):

    <DkimKeyDirectory>/default/private      PEM RSA private key, for every domain we sign
    <DkimKeyDirectory>/default/selector     the selector's name, one line ("default")
    <DkimKeyDirectory>/default/public       PEM public key (for `spamkit dkim dns`)
    <DkimKeyDirectory>/example.net/...      the same, for example.net only

Keys are made with the openssl command, as SME's guide and dkimpy's dknewkey make them.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from smtpfilter.privatekeys import readable_by_everyone
from spamkit.config.endpoints import is_host_name
from spamkit.config import Config, default_config_path
from spamkit.errors import ConfigError

DEFAULT = "default"


def key_root(config: Config) -> Path:
    """DkimKeyDirectory, else dkim_keys beside the configuration file."""
    if config["DkimKeyDirectory"]:
        return Path(config["DkimKeyDirectory"])
    return (config.path or default_config_path()).parent / "dkim_keys"


@dataclass(frozen=True)
class SigningKey:
    domain_directory: Path
    selector: str
    private_pem: bytes


def key_directory(root: Path, domain: str) -> Path:
    """The directory holding `domain`'s own key pair, or the default pair's."""
    own = root / domain.lower()
    return own if (own / "private").is_file() else root / DEFAULT


# Each key as it was last read, by directory. `serve` reads the keys as root, before it gives
# up root for --user; a SIGHUP rebuilds the filters as that user, who cannot read a private
# key `keygen` made (0400, root's), and keeps the key read before.
_LAST_READ: dict[Path, SigningKey] = {}


def signing_keys(root: Path) -> dict[str, SigningKey | None]:
    """Every key pair under `root`, by its directory's name ("default" or a domain, in
    lower case as `keygen` names it); None for one whose private key cannot be read.
    Read all at once when the filter is built: read at a domain's first message, a key
    was read as --user, and one of root's was never found (every message went unsigned)."""
    try:
        directories = sorted(path for path in root.iterdir() if (path / "private").is_file())
    except OSError:  # no key directory (yet)
        return {}
    return {directory.name: read_key(directory) for directory in directories}


def read_key(directory: Path) -> SigningKey | None:
    """The key pair in `directory`; None when its private key cannot be read."""
    try:
        private = (directory / "private").read_bytes()
    except PermissionError:
        return _LAST_READ.get(directory)
    except OSError:
        return None
    key = SigningKey(directory, _selector(directory), private)
    _LAST_READ[directory] = key
    return key


def _selector(directory: Path) -> str:
    try:
        return (directory / "selector").read_text(encoding="ascii").strip() or DEFAULT
    except (OSError, UnicodeDecodeError):
        return DEFAULT  # SME's default pair is named "default"


def key_problems(root: Path) -> list[str]:
    """What would leave mail unsigned, or signed so that no one can verify it: no key pair
    at all, a private key that cannot be read or is not a PEM RSA key, a selector that is
    not a DNS name; and a private key every user may read, with which anyone could sign.
    For `spamkit lint`, and logged when `serve` starts."""
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    keys = signing_keys(root)
    if not keys:
        return [f"dkimsign: no key pair in {root} (make one with `spamkit dkim keygen`): "
                "it signs nothing"]
    problems = []
    for name, key in keys.items():
        private = root / name / "private"
        if key is None:
            problems.append(f"dkimsign: {private} cannot be read: mail from {name} goes unsigned")
            continue
        try:
            parse_pem_private_key(key.private_pem)
        except UnparsableKeyError as error:
            problems.append(f"dkimsign: {key.domain_directory / 'private'} is not a PEM RSA "
                            f"private key ({error}): mail from {name} goes unsigned")
        if (mode := readable_by_everyone(key.domain_directory / "private")) is not None:
            problems.append(f"dkimsign: {key.domain_directory / 'private'} can be read by every user "
                            f"of this machine (mode {mode}): anyone with a login can sign mail as "
                            f"{'our domains' if name == DEFAULT else name}; chmod 400 it")
        if not is_host_name(key.selector):
            problems.append(f"dkimsign: the selector {key.selector!r} in {key.domain_directory} "
                            "is not a DNS name: no one can look up the key it signs with")
    return problems


def _check_domain(domain: str) -> None:
    if not is_host_name(domain):
        raise ConfigError(f"{domain!r} is not a domain name (example.org): its key would be "
                          "looked for where the name leads, not in the key directory")


def generate(root: Path, domain: str | None, selector: str = DEFAULT, bits: int = 2048) -> Path:
    """A new key pair for `domain` (None: the default pair), private key 0400; returns its
    directory. Refuses to replace an existing pair."""
    if domain is not None:
        _check_domain(domain)
    if not is_host_name(selector):
        raise ConfigError(f"selector {selector!r} is not a DNS name (letters, digits, '-', "
                          "labels joined by '.'): it is published as <selector>._domainkey.<domain>")
    directory = root / (domain.lower().rstrip(".") if domain else DEFAULT)  # as key_directory looks
    if (directory / "private").exists():
        raise ConfigError(f"{directory / 'private'} exists; move it away first to make a new pair")
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    private, public = directory / "private", directory / "public"
    _openssl(["genrsa", "-out", str(private), str(bits)])
    os.chmod(private, 0o400)
    _openssl(["rsa", "-in", str(private), "-pubout", "-out", str(public)])
    (directory / "selector").write_text(selector + "\n", encoding="ascii")
    return directory


def dns_record(root: Path, domain: str) -> tuple[str, str]:
    """(name, TXT value) that publishes `domain`'s signing key: "<selector>._domainkey",
    "v=DKIM1; k=rsa; p=<base64 DER>"."""
    _check_domain(domain)
    directory = key_directory(root, domain)
    selector = _selector(directory)  # as signing_keys reads it
    try:
        pem = (directory / "public").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):  # made by hand with only the private key
        pem = _openssl(["rsa", "-in", str(directory / "private"), "-pubout"]).decode("ascii")
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    base64.b64decode(body, validate=True)  # a damaged file says so here, not in DNS
    return f"{selector}._domainkey", f"v=DKIM1; k=rsa; p={body}"


def _openssl(arguments: list[str]) -> bytes:
    try:
        done = subprocess.run(["openssl", *arguments], capture_output=True, timeout=120)
    except FileNotFoundError:
        raise ConfigError("the openssl command is needed to make and read DKIM keys "
                          "(Debian package openssl)") from None
    if done.returncode != 0:
        raise ConfigError(f"openssl {arguments[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
