"""The clock lease and once-keys against a real redis-server."""

from __future__ import annotations

from typing import cast

import redis

from drainctl.clock.lease import Lease, Verdict, release_rank
from drainctl.config import Settings
from drainctl.keys import Keys
from drainctl.signing import Signer
from tests.redis_server import RedisServer


def make_lease(
    settings: Settings, client: redis.Redis, instance: str, release: str, secret: str | None = None
) -> Lease:
    assert settings.app is not None
    return Lease(
        client,
        Keys(settings.app),
        instance_id=instance,
        release=release,
        ttl=15,
        once_ttl=60,
        schedule_ttl=60,
        signer=Signer([secret]) if secret else None,
    )


def forge_lease(settings: Settings, client: redis.Redis, release: str, rank: str) -> None:
    """What anyone with write access could do: name a holder of a newer release, unsigned."""
    key = Keys(settings.app or "").clock_lease
    client.hset(key, mapping={"token": 1, "instance": "evil", "release": release, "rank": rank})
    client.pexpire(key, 10_000)


def test_forged_lease_holder_neither_fences_nor_blocks_a_clock_with_a_secret(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """With a secret, an unsigned holder claiming release v999 is replaced at once; without a
    secret (the documented unauthenticated mode) it fences the v1 clock, as a real v999 would."""
    forge_lease(settings, redis_client, "v999", "999")
    signed = make_lease(settings, redis_client, "a", "v1", secret="s3cret")
    assert signed.acquire().verdict is Verdict.HELD
    forge_lease(settings, redis_client, "v1", "1")  # same release: would keep it standing by
    assert make_lease(settings, redis_client, "b", "v1", "s3cret").acquire().verdict is (
        Verdict.HELD
    )
    forge_lease(settings, redis_client, "v999", "999")
    assert make_lease(settings, redis_client, "c", "v1").acquire().verdict is Verdict.FENCED
    redis_client.delete(Keys(settings.app or "").clock_lease, Keys(settings.app or "").clock_fence)


def test_signed_newer_holder_still_fences_an_older_clock(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """A genuine newer release, signed with the same secret, fences the older clock as before;
    a wrong secret's holder counts as forged."""
    newer = make_lease(settings, redis_client, "n", "v2", "s3cret")
    assert newer.acquire(starting=True).verdict is Verdict.HELD
    old = make_lease(settings, redis_client, "o", "v1", "s3cret")
    assert old.acquire().verdict is Verdict.FENCED
    other = make_lease(settings, redis_client, "x", "v1", "another-secret")
    assert other.acquire().verdict is Verdict.HELD
    redis_client.delete(Keys(settings.app or "").clock_lease, Keys(settings.app or "").clock_fence)


def test_releases_are_ordered_by_their_trailing_number():
    """``v42`` is release 42; a commit sha with no trailing digits has no order."""
    assert release_rank("v42") == 42
    assert release_rank("v9") < release_rank("v10")  # type: ignore[operator]
    assert release_rank("deadbeef") is None


def test_newer_release_takes_over_and_older_one_is_fenced(
    settings: Settings, redis_client: redis.Redis
):
    """A newer release takes the lease at start with a bigger token; the old holder, and any
    older release that starts later, are fenced; a peer of the same release stands by."""
    old = make_lease(settings, redis_client, "a", "v1")
    new = make_lease(settings, redis_client, "b", "v2")
    first = old.acquire(starting=True)
    assert first.verdict is Verdict.HELD
    taken = new.acquire(starting=True)
    assert taken.verdict is Verdict.HELD
    assert taken.token > first.token
    assert old.acquire().verdict is Verdict.FENCED
    assert make_lease(settings, redis_client, "c", "v0").acquire(starting=True).verdict is (
        Verdict.FENCED
    )
    assert make_lease(settings, redis_client, "d", "v2").acquire(starting=True).verdict is (
        Verdict.STANDBY
    )
    assert new.acquire().token == taken.token  # renewing keeps the token
    assert new.release_lease(taken.token)


def test_unordered_releases_take_over_only_at_start(settings: Settings, redis_client: redis.Redis):
    """Releases without numbers: a different one takes over when it starts, never by polling."""
    holder = make_lease(settings, redis_client, "a", "abc")
    holder.acquire(starting=True)
    other = make_lease(settings, redis_client, "b", "def")
    assert other.acquire().verdict is Verdict.FENCED
    assert other.acquire(starting=True).verdict is Verdict.HELD
    assert holder.acquire().verdict is Verdict.FENCED
    other.release_lease(other.acquire().token)


def test_a_scheduled_run_is_claimed_once_and_never_with_a_stale_token(
    settings: Settings, redis_client: redis.Redis
):
    """Once-keys refuse a second claim of the same run even to the holder (split brain), a stale
    token claims nothing, and the last fired run time is recorded with the claim."""
    old = make_lease(settings, redis_client, "a", "v1")
    token = old.acquire(starting=True).token
    assert old.claim(token, "tick", [1000, 2000]) == [1000, 2000]
    assert old.claim(token, "tick", [2000, 3000]) == [3000]
    new = make_lease(settings, redis_client, "b", "v2")
    new_token = new.acquire(starting=True).token
    assert old.claim(token, "tick", [4000]) is None
    assert new.claim(new_token, "tick", [3000, 4000]) == [4000]
    assert redis_client.hget(f"drainctl:{{{settings.app}}}:clock:last", "tick") == b"4000"
    assert 0 < redis_client.pttl(f"drainctl:{{{settings.app}}}:clock:once:tick:4000") <= 60_000
    new.release_lease(new_token)


def test_tokens_stay_monotonic_and_the_last_holder_comes_first_after_data_loss(
    private_redis: RedisServer, app: str
):
    """After Redis loses everything, new tokens still exceed every earlier one (floored by the
    server time); a standby does not take the lost lease until it may (``after_loss``), while
    the clock that held it takes it back at once."""
    client = redis.Redis.from_url(private_redis.url)
    keys = Keys(app)
    ttls = {"ttl": 15, "once_ttl": 60, "schedule_ttl": 60}
    holder = Lease(client, keys, instance_id="a", release="v1", **ttls)
    standby = Lease(client, keys, instance_id="b", release="v1", **ttls)
    first = holder.acquire(starting=True)
    seconds, _micros = cast("tuple[int, int]", client.time())
    assert first.token >= seconds * 1_000_000
    assert standby.acquire().verdict is Verdict.STANDBY
    client.flushall()
    lost = standby.acquire()
    assert (lost.verdict, lost.fresh) == (Verdict.STANDBY, True)
    again = holder.acquire(after_loss=True)
    assert again.verdict is Verdict.HELD
    assert again.token > first.token
    assert standby.acquire().verdict is Verdict.STANDBY
    holder.release_lease(again.token)
    client.close()
