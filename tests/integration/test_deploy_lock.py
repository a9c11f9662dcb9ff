"""The deploy lock, fence ownership and the deploy history, on a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from drainctl.config import Settings
from drainctl.deploy import history
from drainctl.deploy.lock import VERIFY_PHASE, DeployLock, Holder, read_holder, server_now
from drainctl.errors import DeployLocked
from drainctl.fence import Fence, FenceStore
from drainctl.keys import Keys
from drainctl.signing import Signer


def lock(client: redis.Redis, app: str, deploy_id: str, signer: Signer | None = None) -> DeployLock:
    holder = Holder(deploy_id, "ann@laptop", "c0ffee" * 6, server_now(client))
    return DeployLock(client, app, holder, signer)


def test_a_second_deploy_is_refused_naming_the_holder(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """One deploy at a time: the second gets DeployLocked naming who, what and since when."""
    app = settings.app or ""
    first = lock(redis_client, app, "first")
    assert first.acquire() is None
    with pytest.raises(DeployLocked) as refused:
        lock(redis_client, app, "second").acquire()
    assert "deploy first by ann@laptop of c0ffeec0ffee" in str(refused.value)
    assert 0 < redis_client.pttl(Keys(app).deploy_lock) <= 30_000
    lock(redis_client, app, "second").release()  # not the holder: nothing happens
    assert read_holder(redis_client, app, None) == first.holder
    first.release()
    assert read_holder(redis_client, app, None) is None


def test_wait_lock_gets_the_lock_once_it_is_released(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """--wait-lock: a waiting deploy takes the lock when the holder's expiry passes."""
    app = settings.app or ""
    first = lock(redis_client, app, "first")
    first.acquire()
    redis_client.pexpire(Keys(app).deploy_lock, 600)  # the deployer vanished
    second = lock(redis_client, app, "second")
    second.acquire(wait=5.0)
    assert read_holder(redis_client, app, None) == second.holder
    assert not first.refresh()
    second.release()


def test_a_background_verify_is_taken_over_and_notices(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """The hook's lock in phase verify yields to a newer deploy; the verify sees it lost."""
    app = settings.app or ""
    hook = lock(redis_client, app, "hook")
    hook.acquire()
    hook.refresh(phase=VERIFY_PHASE)
    newer = lock(redis_client, app, "newer")
    taken_from = newer.acquire()
    assert taken_from is not None
    assert taken_from.deploy_id == "hook"
    assert not hook.still_mine()
    newer.release()


def test_signed_lock_and_history_reject_forgeries(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """With a secret the lock and the history are signed; a forged record is not believed."""
    app, signer = settings.app or "", Signer(["s3cret"])
    held = lock(redis_client, app, "signed", signer)
    held.acquire()
    assert read_holder(redis_client, app, signer) == held.holder
    assert read_holder(redis_client, app, Signer(["other"])).who == "an unverified holder"
    held.release()
    history.append(redis_client, app, {"id": "real", "verdict": "ok"}, signer)
    redis_client.xadd(Keys(app).history, {"doc": json.dumps({"id": "forged"})})
    assert [r["id"] for r in history.recent(redis_client, app, 10, signer)] == ["real"]
    redis_client.delete(Keys(app).history)


def test_history_is_capped_and_expires(settings: Settings, redis_client: redis.Redis) -> None:
    """The history stream is trimmed to about HISTORY_MAX entries and carries a TTL."""
    app = settings.app or ""
    for i in range(history.HISTORY_MAX + 150):
        history.append(redis_client, app, {"id": str(i)}, None)
    assert redis_client.xlen(Keys(app).history) < history.HISTORY_MAX + 150
    assert redis_client.ttl(Keys(app).history) > 0
    assert history.recent(redis_client, app, 2, None)[0]["id"] == str(history.HISTORY_MAX + 149)
    redis_client.delete(Keys(app).history)


def fence(client: redis.Redis, app: str, deploy_id: str, ttl: float = 60.0) -> Fence:
    store = FenceStore(client, app)
    fenced = Fence("v1", ("worker",), server_now(client) + ttl, deploy_id)
    store.set(fenced, ttl)
    return fenced


def test_a_deploy_lifts_and_keeps_only_its_own_fence(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Compare-and-delete: a losing deploy cannot lift or extend the winner's fence."""
    app = settings.app or ""
    store = FenceStore(redis_client, app)
    fence(redis_client, app, "winner")
    assert store.lift(["v1"], "loser") == 0
    assert not store.keep("v1", "loser", server_now(redis_client))
    assert store.get("v1") is not None
    assert store.lift(["v1"], "winner") == 1
    assert store.get("v1") is None


def test_a_kept_fence_is_kept_in_its_document_too(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """keep moves the ``until`` listeners read, not only the key's expiry."""
    app = settings.app or ""
    store = FenceStore(redis_client, app)
    before = fence(redis_client, app, "d1", ttl=5.0)
    now = server_now(redis_client)
    assert store.keep("v1", "d1", now, ttl=3600.0)
    kept = store.get("v1")
    assert kept is not None
    assert kept.until == pytest.approx(now + 3600.0)
    assert kept.until > before.until
    assert redis_client.pttl(Keys(app).fence("v1")) > 3_000_000
    assert store.lift_any(store.fenced_releases()) == 1


def test_status_shows_the_deploy_in_progress(settings: Settings, redis_client: redis.Redis) -> None:
    """`drainctl status` names the deploy holding the lock."""
    app = settings.app or ""
    held = lock(redis_client, app, "busy")
    held.acquire()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "drainctl", "--redis-url", settings.redis_url, "--app", app,
             "status"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    finally:
        held.release()
    assert done.returncode == 0, done.stderr
    assert "deploy in progress: deploy busy by ann@laptop" in done.stdout


def test_a_fence_is_signed_when_a_secret_is_set_and_stays_signed_when_kept(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """With a secret the stored fence carries a signature (kind ``fence``), also once kept."""
    app, signer = settings.app or "", Signer(["s3cret"])
    store = FenceStore(redis_client, app, signer)
    now = server_now(redis_client)
    store.set(Fence("v1", ("worker",), now + 60.0, "d1"), 60.0)
    for _ in range(2):
        body = json.loads(redis_client.get(Keys(app).fence("v1")) or b"{}")
        assert signer.authenticate(body, "fence")
        assert Fence.decode(body).deploy_id == "d1"
        assert store.keep("v1", "d1", server_now(redis_client), ttl=120.0)
    assert store.lift(["v1"], "d1") == 1
