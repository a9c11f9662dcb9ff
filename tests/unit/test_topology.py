"""Sentinel and Cluster URLs: parsing, the environment, masking, and the client connect() builds."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from drainctl.adapters.liveness import connection_config
from drainctl.config import Settings, mask_url
from drainctl.connection import connect
from drainctl.errors import ConfigError
from drainctl.keys import Keys
from drainctl.topology import (
    ClusterResolver,
    ResolvedConnection,
    ResolvedSSLConnection,
    SentinelResolver,
    parse,
)


def test_sentinel_url_names_the_sentinels_and_the_service():
    """Credentials, database and options go to the data connections; hosts to discovery."""
    topology = parse("redis+sentinel://u:pw@10.0.0.1:26379,10.0.0.2:26380/mymaster?db=2")
    assert topology.kind == "sentinel"
    assert topology.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert topology.service == "mymaster"
    assert topology.url == "redis://u:pw@10.0.0.1:26379?db=2"


def test_cluster_url_or_flag_names_seed_nodes():
    """``redis+cluster://`` and a plain URL with the cluster flag both give seed nodes."""
    assert parse("rediss+cluster://:pw@a:7000,b:7001").hosts == (("a", 7000), ("b", 7001))
    assert parse("rediss+cluster://:pw@a:7000,b:7001").url == "rediss://:pw@a:7000"
    assert parse("redis://a:7000/0", cluster=True).kind == "cluster"
    assert parse("redis://a:7000/0").kind == "single"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://a:1,b:2", "SERVICE_NAME"),
        ("redis+sentinel://a:1,b/svc", "host:port"),
        ("redis+cluster:///0", "no host"),
    ],
)
def test_malformed_urls_are_configuration_errors(url: str, message: str):
    """A Sentinel URL needs a service name, and every host a port."""
    with pytest.raises(ConfigError, match=message):
        parse(url)


def test_sentinels_from_the_environment_keep_tls_and_credentials():
    """DRAINCTL_SENTINELS + DRAINCTL_SENTINEL_SERVICE make a Sentinel URL; the scheme and the
    credentials come from DRAINCTL_REDIS_URL; the cluster flag and failover timeout are read."""
    settings = Settings.from_env(
        {
            "DRAINCTL_REDIS_URL": "rediss://user:pw@ignored:6379/0",
            "DRAINCTL_SENTINELS": "s1:26379, s2:26379",
            "DRAINCTL_SENTINEL_SERVICE": "main",
            "DRAINCTL_REDIS_CLUSTER": "1",
            "DRAINCTL_FAILOVER_TIMEOUT": "5",
        }
    )
    assert settings.redis_url == "rediss+sentinel://user:pw@s1:26379,s2:26379/main"
    assert settings.redis_cluster
    assert settings.failover_timeout == 5.0
    with pytest.raises(ConfigError, match="DRAINCTL_SENTINEL_SERVICE"):
        Settings.from_env({"DRAINCTL_SENTINELS": "s1:26379"})


def test_passwords_of_multi_host_urls_are_masked():
    """Several hosts leave no single port to parse; the password is masked all the same."""
    assert mask_url("redis+sentinel://u:pw@a:1,b:2/svc") == "redis+sentinel://u:***@a:1,b:2/svc"


def test_connect_steers_a_plain_client():
    """connect() keeps a plain client whose connections resolve their address: TLS for
    ``rediss+``, the slot of the app's hash tag for a cluster."""
    cluster = connect(Settings(redis_url="rediss+cluster://a:7000,b:7001", app="shop"))
    assert cluster.connection_pool.connection_class is ResolvedSSLConnection
    resolver = cluster.connection_pool.connection_kwargs["resolver"]
    assert isinstance(resolver, ClusterResolver)
    assert resolver.slot == key_slot(Keys("shop").inbox("x").encode()) == key_slot(b"shop")
    sentinel = connect(Settings(redis_url="redis+sentinel://a:1/svc", app="shop"))
    assert sentinel.connection_pool.connection_class is ResolvedConnection
    assert isinstance(sentinel.connection_pool.connection_kwargs["resolver"], SentinelResolver)


def test_reliable_queue_helper_refuses_a_steered_client():
    """The liveness helper reconnects from a client's host and port, which for a Sentinel or
    Cluster client name a sentinel or a seed node: refused loudly, not beating elsewhere."""
    client = connect(Settings(redis_url="redis+sentinel://a:1/svc", app="shop"))
    with pytest.raises(ConfigError, match="one Redis server"):
        connection_config(client)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.MovedError("12 10.0.0.9:7002"),  # redis-py >= 6
        redis.ResponseError("MOVED 12 10.0.0.9:7002"),  # redis-py 5 on a plain client
    ],
)
def test_moved_points_the_next_connection_at_the_new_owner(exc: redis.ResponseError):
    """MOVED for the app's slot names its new master; anything else sends it to discovery."""
    resolver = ClusterResolver(parse("redis+cluster://a:1"), "{x}", {})
    resolver.slot = 12
    resolver.redirected(exc)
    assert resolver.address() == ("10.0.0.9", 7002)
    resolver.redirected(redis.ResponseError("TRYAGAIN Multiple keys request during rehashing"))
    assert resolver._owner is None
