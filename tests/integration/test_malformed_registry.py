"""Malformed registry documents against the real CLI: skipped or sanitised, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from drainctl.config import Settings
from tests.e2e.heroku import git_work_tree
from tests.integration.conftest import StartListener
from tests.integration.test_forged_heartbeats import SECRET, cli

WORKER = {"process_type": "worker", "release": "v1", "heartbeat_interval": 1}


def heartbeat(instance_id: str, **fields: object) -> str:
    return json.dumps({"instance_id": instance_id, **WORKER, **fields})


# instance id -> the raw document stored under it
FORGED: dict[str, str | bytes] = {
    "interval-x": heartbeat("interval-x", heartbeat_interval="x"),
    "interval-null": heartbeat("interval-null", heartbeat_interval=None),
    "interval-huge": heartbeat("interval-huge", heartbeat_interval=1e308),
    "wrong-types": heartbeat("wrong-types", dyno=[1], release={"a": 1}, state=7, pid="x",
                             memory_mb="lots", last_error=[1]),
    "markup": heartbeat("markup", dyno="[/]", state="[bold red]x", commit="\x1b[2J"),
    "no-type": json.dumps({"instance_id": "no-type", "heartbeat_interval": 1}),
    "other-id": heartbeat("someone-else"),
    "not-object": b"[1, 2, 3]",
    "not-json": b"{",
}  # fmt: skip
# What is left after sanitising: the documents that are heartbeats, with fields fixed.
KEPT = {"interval-x", "interval-null", "interval-huge", "wrong-types", "markup"}


@pytest.fixture
def forged(settings: Settings) -> object:
    """Every malformed document in the registry, keys expiring like real ones; deleted after."""
    client = redis.Redis.from_url(settings.redis_url)
    base = f"drainctl:{settings.app}:"
    for instance_id, raw in FORGED.items():
        client.set(f"{base}instance:{instance_id}", raw, px=60_000)
        client.zadd(f"{base}instances", {instance_id: 0})
    client.expire(f"{base}instances", 60)
    yield
    client.delete(*(f"{base}instance:{i}" for i in FORGED))
    client.close()


def assert_clean(done: object, code: int) -> None:
    assert getattr(done, "returncode", None) == code, getattr(done, "stderr", "")
    assert "Traceback" not in getattr(done, "stderr", "")


@pytest.mark.usefixtures("forged")
@pytest.mark.parametrize("secret", [False, True])
def test_status_lists_what_can_be_shown_and_warns(
    settings: Settings, start_listener: StartListener, secret: bool
) -> None:
    """status and --json status: malformed entries skipped or sanitised, a warning for each."""
    real = start_listener("worker", secrets=(SECRET,) if secret else (), dyno="worker.9")
    table = cli(settings, "status", secret=secret)
    assert_clean(table, 0)
    assert "worker.9" in table.stdout
    assert "[/]" in table.stdout  # shown as text, not taken for rich markup
    assert "\x1b" not in table.stdout
    for problem in (
        "heartbeat_interval 'x'",
        "heartbeat_interval None",
        "heartbeat_interval 1e+308",
        "is not JSON",
        "is not a JSON object",
        "names another instance id",
        "has no printable process_type",
        "wrong type, ignored: dyno, release, state",
    ):
        assert problem in table.stderr, problem  # fmt: skip
    listed = cli(settings, "--json", "status", secret=secret)
    assert_clean(listed, 0)
    rows = {r["instance_id"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {*KEPT, real.identity.instance_id}
    assert {rows[i]["heartbeat_interval"] for i in ("interval-x", "interval-null")} == {5.0}
    assert "dyno" not in rows["wrong-types"]


@pytest.mark.usefixtures("forged")
def test_ping_verify_and_deploy_survive_them(
    settings: Settings, start_listener: StartListener, tmp_path: Path
) -> None:
    """ping, verify and the deploy plan read the same list: with a secret the forged entries are
    unverified and the command works; without one they count (and do not answer): exit 3."""
    start_listener("worker", secrets=(SECRET,), release="v1")
    pinged = cli(settings, "--json", "ping", "--timeout", "5", secret=True)
    assert_clean(pinged, 0)
    assert {u["instance_id"] for u in json.loads(pinged.stdout)["unverified"]} == KEPT
    unsigned = cli(settings, "ping", "--timeout", "0.5", secret=False)
    assert_clean(unsigned, 3)
    assert "6 did not answer" in unsigned.stderr  # the real one refuses an unsigned ping too
    verified = cli(settings, "verify", "--commit", "abc", "-t", "worker", "--verify-timeout", "1",
                   secret=True)  # fmt: skip
    assert_clean(verified, 5)
    repo = git_work_tree(tmp_path / "repo")
    deployed = cli(settings, "deploy", "-t", "worker", "--push-cmd", "exit 9", "--drain-deadline",
                   "1", secret=True, cwd=repo)  # fmt: skip
    assert_clean(deployed, 4)  # planned, drained the real one, then the push failed
    assert "drain 1 worker" in deployed.stdout
