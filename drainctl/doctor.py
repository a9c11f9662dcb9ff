"""``drainctl doctor``: check what a deploy relies on, one verdict per line.

Each check is a function of a :class:`Probe` (the connection, the settings and what was read
once: ``INFO``, the live instances) returning a :class:`Finding`. A check that meets a drainctl
error (an ACL refusal, an outage) fails with that error's message; the rest still run. Any
failure makes the report fail (``drainctl doctor`` exits 1); warnings do not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis

from drainctl.__about__ import __version__
from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.connection import Line, ServerClock, translate_outage
from drainctl.errors import DrainctlError, RedisUnavailable
from drainctl.eviction import eviction_risk
from drainctl.keys import Keys
from drainctl.registry import InstanceRecord

MIN_VERSION = (5, 0)  # CLIENT UNBLOCK (RQ); BLMPOP (Redis 7) is optional
MAX_CLOCK_SKEW = 1.0
# What the CLI runs (status, ping, drain, resume, deploy): name -> a representative invocation
# for ACL DRYRUN, with ``{}`` standing for a key of the app.
CLI_COMMANDS: dict[str, tuple[str, ...]] = {
    "TIME": ("TIME",),
    "SCRIPT|LOAD": ("SCRIPT", "LOAD", "return 1"),
    "EVALSHA": ("EVALSHA", "0" * 40, "1", "{}instances"),
    "ZRANGE": ("ZRANGE", "{}instances", "0", "-1"),
    "ZREM": ("ZREM", "{}instances", "x"),
    "GET": ("GET", "{}instance:x"),
    "MGET": ("MGET", "{}instance:x", "{}instance:y"),
    "PTTL": ("PTTL", "{}instance:x"),
    "RPUSH": ("RPUSH", "{}inbox:x", "x"),
    "PEXPIRE": ("PEXPIRE", "{}inbox:x", "1"),
    "BLPOP": ("BLPOP", "{}reply:x", "1"),
    "LPOP": ("LPOP", "{}reply:x", "1"),
}
# What deploy, unfence and history add: fences, the deploy lock, the history stream.
DEPLOY_COMMANDS: dict[str, tuple[str, ...]] = {
    "SET": ("SET", "{}fence:x", "x", "PX", "1"),
    "DEL": ("DEL", "{}fence:x"),
    "SCAN": ("SCAN", "0", "MATCH", "{}fence:*"),
    "XADD": ("XADD", "{}deploy:history", "*", "k", "v"),
    "XREVRANGE": ("XREVRANGE", "{}deploy:history", "+", "-", "COUNT", "1"),
}
OPTIONAL_COMMANDS = {"BLMPOP": ("BLMPOP", "1", "1", "{}reply:x", "LEFT", "COUNT", "1")}


class Verdict(str, Enum):
    """How one check came out."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIPPED = "not checked"


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    check: str
    verdict: Verdict
    detail: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return {"check": self.check, "verdict": self.verdict.value, "detail": self.detail}


@dataclass
class Report:
    """Every finding, in order; ``ok`` unless one failed."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(f.verdict is not Verdict.FAIL for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"ok": self.ok, "checks": [f.as_dict() for f in self.findings]}


@dataclass
class Probe:
    """The connection and settings the checks share, and what they read only once."""

    settings: Settings
    client: ControlClient
    acl_user: str | None = None
    registry_error: DrainctlError | None = None

    @functools.cached_property
    def keys(self) -> Keys:
        """The app's key names."""
        return Keys(self.client.app)

    def info(self, section: str) -> dict[str, Any] | None:
        """``INFO section``, or None when this user may not run INFO."""
        with translate_outage(self.settings):
            try:
                return dict(self.client.client.info(section))
            except redis.exceptions.NoPermissionError:
                return None

    @functools.cached_property
    def live(self) -> list[InstanceRecord] | None:
        """Every live instance, unverified ones included; None if the registry is unreadable."""
        try:
            return self.client.live(unverified=True)
        except DrainctlError as exc:
            self.registry_error = exc
            return None


Check = Callable[[Probe], Finding]


def examine(settings: Settings, acl_user: str | None = None) -> Report:
    """Run every check against the configured Redis and app."""
    probe = Probe(settings, ControlClient(settings, sender="doctor"), acl_user)
    report = Report()
    try:
        for check in CHECKS:
            finding, error = _run(check, probe)
            report.findings.append(finding)
            if isinstance(error, RedisUnavailable):
                break  # nothing else can be checked without Redis
    finally:
        probe.client.client.close()
        probe.client.client.connection_pool.disconnect()
    return report


def _run(check: Check, probe: Probe) -> tuple[Finding, DrainctlError | None]:
    try:
        return check(probe), None
    except DrainctlError as exc:
        return Finding(check.__name__.removeprefix("check_"), Verdict.FAIL, str(exc)), exc


def check_redis(probe: Probe) -> Finding:
    """Reachable, and recent enough."""
    server = probe.info("server")
    if server is None:
        with translate_outage(probe.settings):
            probe.client.client.time()  # reachable? (the CLI needs TIME anyway)
        return Finding("redis", Verdict.SKIPPED, "reachable; this user may not run INFO")
    version = str(server.get("redis_version", "?"))
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers < MIN_VERSION:
        return Finding("redis", Verdict.WARN, f"Redis {version}: RQ workers need Redis >= 5")
    return Finding("redis", Verdict.OK, f"Redis {version}")


def check_commands(probe: Probe) -> Finding:
    """The server has every command drainctl sends."""
    names = [n.split("|")[0] for n in (*CLI_COMMANDS, *DEPLOY_COMMANDS, *OPTIONAL_COMMANDS)]
    with translate_outage(probe.settings):
        try:
            found = _command_info(probe, names)
        except redis.exceptions.NoPermissionError:
            return Finding("commands", Verdict.SKIPPED, "this user may not run COMMAND INFO")
    missing = [n for n in names if n.lower() not in found]
    required = [n for n in missing if n not in OPTIONAL_COMMANDS]
    if required:
        return Finding("commands", Verdict.FAIL, f"missing: {', '.join(required)}")
    note = "; BLMPOP missing (Redis < 7): replies are read with BLPOP" if missing else ""
    return Finding("commands", Verdict.OK, f"all {len(names) - len(missing)} present{note}")


def _command_info(probe: Probe, names: list[str]) -> set[str]:
    # Raw COMMAND INFO: one entry per name, nil for a command the server does not have.
    with Line(probe.client.client) as line:
        (entries,) = line.call(("COMMAND", "INFO", *names))
    return {name.lower() for name, entry in zip(names, entries, strict=False) if entry}


def check_acl(probe: Probe) -> Finding:
    """The ACL user may run every command the CLI sends (ACL DRYRUN, Redis >= 7): those of
    status, ping, drain and resume (else FAIL), and those deploy, unfence and history add (else
    a warning: the README's minimal CLI user runs the former only)."""
    user = probe.acl_user or _url_user(probe.settings.redis_url)
    wanted = CLI_COMMANDS | DEPLOY_COMMANDS
    dryruns = [
        ("ACL", "DRYRUN", user, *(a.replace("{}", probe.keys.base) for a in invocation))
        for invocation in wanted.values()
    ]
    with translate_outage(probe.settings), Line(probe.client.client) as line:
        answers = line.call(*dryruns, raise_on_error=False)
    errors = [a for a in answers if isinstance(a, redis.ResponseError)]
    if errors and "not found" in str(errors[0]):
        return Finding(f"acl {user}", Verdict.FAIL, f"no ACL user {user!r} on this Redis")
    if errors:
        why = (
            "this user may not run ACL DRYRUN"
            if isinstance(errors[0], redis.exceptions.NoPermissionError)
            else f"no ACL DRYRUN here (Redis < 7?): {errors[0]}"
        )
        hint = "; to check another user, run doctor with an admin URL and --acl-user NAME"
        return Finding(f"acl {user}", Verdict.SKIPPED, why + hint)
    refused = [name for name, a in zip(wanted, answers, strict=True) if _text(a) != "OK"]
    if any(name in CLI_COMMANDS for name in refused):
        return Finding(f"acl {user}", Verdict.FAIL, f"may not run {', '.join(refused)}")
    if refused:
        return Finding(
            f"acl {user}",
            Verdict.WARN,
            f"may run status, ping, drain and resume; not deploy, unfence or history "
            f"(may not run {', '.join(refused)})",
        )
    return Finding(f"acl {user}", Verdict.OK, f"may run all {len(wanted)} CLI commands")


def check_eviction(probe: Probe) -> Finding:
    """``maxmemory-policy`` cannot drop drainctl's keys."""
    memory = probe.info("memory")
    if memory is None:
        return Finding("maxmemory-policy", Verdict.SKIPPED, "this user may not run INFO")
    risk = eviction_risk(memory)
    policy = memory.get("maxmemory_policy", "?")
    if risk is not None:
        return Finding("maxmemory-policy", Verdict.WARN, risk)
    limit = memory.get("maxmemory") or 0
    detail = f"{policy}" + (f", maxmemory {limit} bytes" if limit else ", no maxmemory")
    return Finding("maxmemory-policy", Verdict.OK, detail)


def check_tls(probe: Probe) -> Finding:
    """Whether the connection is encrypted and its certificate verified."""
    parts = urlsplit(probe.settings.redis_url)
    if parts.scheme != "rediss":
        local = parts.hostname in {"localhost", "127.0.0.1", "::1"}
        verdict = Verdict.OK if local else Verdict.WARN
        return Finding("tls", verdict, "off (redis://)" + (" on loopback" if local else ""))
    reqs = parse_qs(parts.query).get("ssl_cert_reqs", [probe.settings.ssl_cert_reqs or ""])[0]
    if reqs.lower() == "none":
        return Finding("tls", Verdict.WARN, "on, certificate NOT verified (ssl_cert_reqs=none)")
    return Finding("tls", Verdict.OK, "on, certificate verified")


def check_registry(probe: Probe) -> Finding:
    """The live instances can be read (what status, plans and verifies do)."""
    records = probe.live
    if records is None:
        return Finding("registry", Verdict.FAIL, str(probe.registry_error))
    return Finding("registry", Verdict.OK, f"{len(records)} live instance(s)")


def _unread(name: str) -> Finding:
    return Finding(name, Verdict.SKIPPED, "the registry could not be read")


def check_secret(probe: Probe) -> Finding:
    """A secret is configured, and the live instances sign their heartbeats with it."""
    records = probe.live
    if records is None:
        return _unread("secret")
    if not probe.settings.secrets:
        signing = [r for r in records if "sig" in r.doc]
        detail = "none: control messages are unauthenticated"
        if signing:
            detail += f"; {len(signing)} live instance(s) sign theirs: give this CLI the secret"
        return Finding("secret", Verdict.WARN, detail)
    doubted = [r for r in records if r.verified is False]
    if doubted:
        names = ", ".join(f"{r.label}: {r.doubt}" for r in doubted[:5])
        detail = f"{len(doubted)} of {len(records)} live instance(s) do not sign with it ({names})"
        return Finding("secret", Verdict.FAIL, detail)
    return Finding("secret", Verdict.OK, f"set; all {len(records)} live instance(s) sign with it")


def check_clock(probe: Probe) -> Finding:
    """Skew between this machine and the Redis server (drainctl stamps with the server's)."""
    clock = ServerClock()
    with translate_outage(probe.settings):
        clock.sync(probe.client.client)
    skew = f"this machine is {clock.offset:+.3f} s off the Redis server"
    if abs(clock.offset) > MAX_CLOCK_SKEW:
        detail = f"{skew}: harmless to drainctl (it uses the server's clock), but check NTP"
        return Finding("clock", Verdict.WARN, detail)
    return Finding("clock", Verdict.OK, skew)


def check_metadata(probe: Probe) -> Finding:
    """Live instances report the release (fences) and commit (verify) a deploy needs."""
    if probe.live is None:
        return _unread("metadata")
    lacking = [
        r.label
        for r in probe.live
        if r.trusted and (r.doc.get("release") in {None, "unknown"} or not r.doc.get("commit"))
    ]
    if lacking:
        hint = "set HEROKU_RELEASE_VERSION and HEROKU_SLUG_COMMIT, or DRAINCTL_RELEASE"
        detail = f"no release or commit: {', '.join(lacking[:5])} ({hint})"
        return Finding("metadata", Verdict.WARN, detail)
    return Finding("metadata", Verdict.OK, f"{len(probe.live)} live instance(s) report both")


def check_versions(probe: Probe) -> Finding:
    """Every listener runs the same drainctl version as this CLI."""
    if probe.live is None:
        return _unread("versions")
    versions = {str(r.doc.get("drainctl_version") or "older") for r in probe.live if r.trusted}
    if versions - {__version__}:
        found = ", ".join(sorted(versions))
        return Finding("versions", Verdict.WARN, f"listeners run {found}; this CLI {__version__}")
    detail = f"all on {__version__}" if versions else "no verified listener"
    return Finding("versions", Verdict.OK, detail)


CHECKS: tuple[Check, ...] = (
    check_redis,
    check_commands,
    check_acl,
    check_eviction,
    check_tls,
    check_registry,
    check_secret,
    check_clock,
    check_metadata,
    check_versions,
)


def _url_user(url: str) -> str:
    return unquote(urlsplit(url).username or "") or "default"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
