"""Targets: who to poll and how, from the targets TOML file or net-snmp style flags.

The file (contrib/snmp/targets.toml is a commented example):

    [defaults]                 # applies to every [[target]] unless it says otherwise
    version = "2c"
    community = "public"
    modules = ["system", "interfaces"]

    [[target]]
    name = "core1"             # the <host> path component (default: the address)
    address = "192.0.2.1"
    ...

    [module.NAME]              # user modules (see modules.py)
    [traps]                    # the trap receiver's settings (see traps.py)
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace

from monbus.core.line import sanitize

from .modules import Module, ModuleError, parse_module, resolve

AUTH = {"MD5": "md5", "SHA": "sha", "SHA1": "sha", "SHA-1": "sha", "SHA-224": "sha224",
        "SHA224": "sha224", "SHA-256": "sha256", "SHA256": "sha256", "SHA-384": "sha384",
        "SHA384": "sha384", "SHA-512": "sha512", "SHA512": "sha512"}
# net-snmp's names: AES192/AES256 use Blumenthal key extension (RFC draft, what net-snmp
# implements), AES192C/AES256C the Reeder ("Cisco") one.
PRIV = {"DES": "des", "AES": "aes", "AES128": "aes", "AES-128": "aes", "AES192": "aes192",
        "AES-192": "aes192", "AES256": "aes256", "AES-256": "aes256", "AES192C": "aes192c",
        "AES256C": "aes256c"}
LEVELS = ("noAuthNoPriv", "authNoPriv", "authPriv")
VERSIONS = ("1", "2c", "3")

TARGET_KEYS = {"name", "address", "port", "version", "community", "user", "level",
               "auth_protocol", "auth_password", "priv_protocol", "priv_password",
               "context", "timeout", "retries", "max_repetitions", "modules", "interval",
               "deadline"}


class TargetError(ValueError):
    """A target definition that cannot work; the message names the target and the key."""


@dataclass
class Target:
    address: str
    port: int = 161
    name: str = ""
    version: str = "2c"
    community: str = "public"
    user: str | None = None
    level: str = "authPriv"
    auth_protocol: str | None = None
    auth_password: str | None = None
    priv_protocol: str | None = None
    priv_password: str | None = None
    context: str = ""
    timeout: float = 2.0
    retries: int = 1
    max_repetitions: int = 25
    modules: list = field(default_factory=list)
    interval: float = 60.0
    deadline: float | None = None

    @property
    def host(self) -> str:
        """The path component naming this target."""
        if self.name:
            return sanitize(self.name)
        return sanitize(self.address if self.port == 161 else f"{self.address}:{self.port}")

    @property
    def effective_deadline(self) -> float:
        """Seconds the whole poll of this target may take: by default every module may
        see one full timeout-and-retries cycle, and no more than that in total."""
        if self.deadline:
            return self.deadline
        per_request = self.timeout * (self.retries + 1)
        return per_request * max(2, len(self.modules) + 1)

    def __repr__(self) -> str:  # never print passwords or communities
        return f"Target({self.host} {self.address}:{self.port} v{self.version})"


def _norm_choice(value, table: dict, what: str, where: str) -> str:
    key = str(value).upper().replace("_", "-")
    if key in table:
        return table[key]
    if key.replace("-", "") in table:
        return table[key.replace("-", "")]
    raise TargetError(f"{where}: unknown {what} {value!r} (use one of "
                      f"{', '.join(sorted({k for k in table if '-' not in k}))})")


def check(t: Target, where: str) -> Target:
    """Validate and normalise one target.  Raises TargetError."""
    t.version = str(t.version).lower().removeprefix("v")
    if t.version not in VERSIONS:
        raise TargetError(f"{where}: version must be 1, 2c or 3, not {t.version!r}")
    if not t.address:
        raise TargetError(f"{where}: no address")
    if not 0 < int(t.port) < 65536:
        raise TargetError(f"{where}: bad port {t.port!r}")
    t.port = int(t.port)
    if t.timeout <= 0 or t.retries < 0:
        raise TargetError(f"{where}: timeout must be > 0 and retries >= 0")
    if not 1 <= int(t.max_repetitions) <= 1000:
        raise TargetError(f"{where}: max_repetitions must be 1..1000")
    if t.version == "3":
        if not t.user:
            raise TargetError(f"{where}: SNMPv3 needs a user (-u)")
        levels = {x.lower(): x for x in LEVELS}
        if t.level.lower() not in levels:
            raise TargetError(f"{where}: level must be one of {', '.join(LEVELS)}")
        t.level = levels[t.level.lower()]
        if t.level in ("authNoPriv", "authPriv"):
            t.auth_protocol = _norm_choice(t.auth_protocol or "SHA", AUTH,
                                           "auth protocol", where)
            if not t.auth_password or len(t.auth_password) < 8:
                raise TargetError(f"{where}: {t.level} needs an auth password (-A) of "
                                  f"at least 8 characters (RFC 3414 section 11.2)")
        if t.level == "authPriv":
            t.priv_protocol = _norm_choice(t.priv_protocol or "AES", PRIV,
                                           "privacy protocol", where)
            if not t.priv_password or len(t.priv_password) < 8:
                raise TargetError(f"{where}: authPriv needs a privacy password (-X) of "
                                  f"at least 8 characters")
    return t


def load(path: str) -> tuple[list[Target], dict, dict]:
    """(targets, user modules, traps settings) from a targets file.  Raises TargetError."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise TargetError(f"cannot read {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path}: {e}") from None
    return parse(data, path)


def parse(data: dict, where: str = "targets") -> tuple[list[Target], dict, dict]:
    """Targets, user modules and the [traps] table from parsed TOML."""
    unknown = set(data) - {"defaults", "target", "module", "traps"}
    if unknown:
        raise TargetError(f"{where}: unknown top-level key(s) {sorted(unknown)} "
                          f"(expected defaults, target, module, traps)")
    user = {}
    for name, spec in (data.get("module") or {}).items():
        try:
            user[name] = parse_module(name, spec)
        except ModuleError as e:
            raise TargetError(f"{where}: {e}") from None
    defaults = dict(data.get("defaults") or {})
    bad = set(defaults) - TARGET_KEYS
    if bad:
        raise TargetError(f"{where} [defaults]: unknown key(s) {sorted(bad)}")
    targets = []
    names = set()
    for i, spec in enumerate(data.get("target") or []):
        spec = {**defaults, **spec}
        w = f"{where} target {spec.get('name') or spec.get('address') or i}"
        bad = set(spec) - TARGET_KEYS
        if bad:
            raise TargetError(f"{w}: unknown key(s) {sorted(bad)}")
        mods = spec.pop("modules", None) or ["system", "interfaces"]
        try:
            t = Target(**spec)
            t.modules = resolve(mods, user)
        except TypeError as e:
            raise TargetError(f"{w}: {e}") from None
        except ModuleError as e:
            raise TargetError(f"{w}: {e}") from None
        check(t, w)
        if t.host in names:
            raise TargetError(f"{w}: two targets named {t.host!r}; give each a distinct name")
        names.add(t.host)
        targets.append(t)
    # pysnmp keeps one set of keys per SNMPv3 user name (its LCD is keyed by the name), so
    # two targets may share a user only with the same protocols and pass phrases
    users = {}
    for t in targets:
        if t.version == "3":
            creds = (t.level, t.auth_protocol, t.auth_password, t.priv_protocol,
                     t.priv_password)
            if users.setdefault(t.user, (t.host, creds))[1] != creds:
                raise TargetError(f"{where}: targets {users[t.user][0]!r} and {t.host!r} use "
                                  f"SNMPv3 user {t.user!r} with different keys; one process "
                                  f"can hold one key set per user name")
    traps = data.get("traps") or {}
    if not isinstance(traps, dict):
        raise TargetError(f"{where}: [traps] must be a table")
    return targets, user, traps


def parse_address(text: str, default_port: int = 161) -> tuple[str, int]:
    """'192.0.2.1', '192.0.2.1:1161', 'udp:host:161', '[2001:db8::1]:161' -> (host, port)."""
    t = text.strip()
    if t.lower().startswith("udp:"):
        t = t[4:]
    if t.lower().startswith("udp6:"):
        t = t[5:]
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port = rest.lstrip(":") or default_port
    elif t.count(":") == 1:
        host, _, port = t.partition(":")
    else:
        host, port = t, default_port
    try:
        port = int(port)
    except ValueError:
        raise TargetError(f"bad port in address {text!r}") from None
    if not host or not 0 < port < 65536:
        raise TargetError(f"bad address {text!r}")
    return host, port


def with_overrides(t: Target, **kw) -> Target:
    """A copy of `t` with the given fields replaced (None values ignored)."""
    return replace(t, **{k: v for k, v in kw.items() if v is not None})
