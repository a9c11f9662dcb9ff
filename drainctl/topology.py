"""Where the app's Redis lives: one server, a Sentinel service, or the Cluster node of its slot.

Every drainctl key of an app shares one Cluster hash slot (see :mod:`drainctl.keys`), so on a
cluster the app lives on one master, and a Sentinel service has one master too. Either way
drainctl talks to one server at a time over plain connections (scripts, pipelines, MULTI,
blocking pops and :class:`~drainctl.connection.Line` work unchanged); what changes is *which*
server: each connection asks a :class:`Resolver` for the address when it (re)connects.

A reply that says the server is no longer the right one (``MOVED``, ``ASK``, ``TRYAGAIN``,
``CLUSTERDOWN``, ``READONLY`` from a demoted master) drops the connection and raises
:class:`Redirected`, a ``ConnectionError``: callers back off and retry as after any outage, and
the next connection goes where the redirect (or a fresh discovery) points.

URLs: ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[?db=N]`` and
``redis+cluster://[user:pass@]host:port[,host:port...]`` (``rediss+`` for TLS), or a plain URL
with ``DRAINCTL_REDIS_CLUSTER=1``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.connection import SSLConnection
from redis.crc import key_slot
from redis.sentinel import Sentinel

from drainctl.config import Settings
from drainctl.errors import ConfigError
from drainctl.sockets import KernelTimedConnection

logger = logging.getLogger(__name__)

Address = tuple[str, int]
# Replies meaning "not here (any more)": MOVED is an AskError, MASTERDOWN a ClusterDownError.
_ELSEWHERE = (
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
)
# The same by error code: redis-py < 6 gives a plain client a bare ResponseError for them.
_ELSEWHERE_CODES = frozenset({"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"})
FAILOVER_POLL = 0.25
_SCHEMES = {
    "redis+sentinel": ("sentinel", "redis"),
    "rediss+sentinel": ("sentinel", "rediss"),
    "redis+cluster": ("cluster", "redis"),
    "rediss+cluster": ("cluster", "rediss"),
}


class Redirected(redis.ConnectionError):
    """The server answered that the app's keys are served elsewhere now; reconnect and retry."""


@dataclass(frozen=True)
class Topology:
    """A parsed URL: ``kind`` (single, sentinel, cluster), the hosts, the service name, and
    ``url``, a plain ``redis(s)://`` URL for the first host that carries credentials, database
    and query options for every data connection."""

    kind: str
    hosts: tuple[Address, ...]
    service: str
    url: str


def on_cluster(settings: Settings) -> bool:
    """Whether these settings talk to a Redis Cluster."""
    return parse(settings.redis_url, settings.redis_cluster).kind == "cluster"


def parse(url: str, cluster: bool = False) -> Topology:
    """The topology a URL names; ``cluster`` makes a plain URL a cluster's seed node."""
    scheme, _, rest = url.partition("://")
    kind, plain = _SCHEMES.get(scheme.lower(), ("cluster" if cluster else "single", scheme))
    if kind == "single":
        return Topology(kind, (), "", url)
    parts = urlsplit(f"{plain}://{rest}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = tuple(_address(item) for item in hostlist.split(",") if item)
    if not hosts:
        raise ConfigError(f"no host in the Redis URL {plain}+{kind}://...")
    service, path = "", parts.path
    if kind == "sentinel":
        service = parts.path.strip("/")
        if not service:
            raise ConfigError("a redis+sentinel:// URL ends with /SERVICE_NAME")
        path = ""
    host, port = hosts[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return Topology(kind, hosts, service, urlunsplit(parts._replace(netloc=netloc, path=path)))


def _address(item: str) -> Address:
    host, _, port = item.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected host:port in the Redis URL, got {item!r}")
    return host.strip("[]"), int(port)


class Resolver(Protocol):
    """Tells a connection where to connect; told when the server redirects it."""

    def address(self) -> Address:
        """The address to connect to now (may ask sentinels or cluster nodes)."""

    def redirected(self, exc: redis.ResponseError | None) -> None:
        """The server refused with ``exc`` (None: could not be reached): forget or correct."""


class SentinelResolver:
    """The master of a Sentinel service, asked of the sentinels at each (re)connect.

    The sentinels' connections are closed after each question: a listener holds none for long.
    """

    def __init__(self, topology: Topology, sentinel_kwargs: dict[str, Any]) -> None:
        self.service = topology.service
        # Typed as Any: redis-py leaves Sentinel unannotated.
        factory: Any = Sentinel
        self.sentinel: Any = factory(list(topology.hosts), sentinel_kwargs=sentinel_kwargs)

    def address(self) -> Address:
        """Ask the sentinels (in turn) for the current master."""
        try:
            host, port = self.sentinel.discover_master(self.service)
        finally:
            for client in self.sentinel.sentinels:
                client.connection_pool.disconnect()
        return str(host), int(port)

    def redirected(self, exc: redis.ResponseError | None) -> None:
        """Nothing to forget: every connection asks the sentinels afresh."""


class ClusterResolver:
    """The master owning one hash slot, from ``CLUSTER SLOTS`` of any node that answers.

    The address is kept until a redirect: ``MOVED`` names the new owner, anything else (a dead
    node, ``CLUSTERDOWN``, ``READONLY``) sends the next connection back to discovery, which asks
    every node seen so far, seed nodes first.
    """

    def __init__(self, topology: Topology, key: str, node_kwargs: dict[str, Any]) -> None:
        self.slot = key_slot(key.encode())
        self.seeds = list(topology.hosts)
        self.known: list[Address] = []
        self.node_kwargs = node_kwargs
        self._owner: Address | None = None
        self._lock = threading.Lock()

    def address(self) -> Address:
        """The slot's master: the one last learnt, else discovered now."""
        with self._lock:
            if self._owner is None:
                self._owner = self._discover()
            return self._owner

    def redirected(self, exc: redis.ResponseError | None) -> None:
        """Follow MOVED to the node it names; anything else: discover again next time."""
        moved = _moved(exc)
        with self._lock:
            self._owner = moved[1] if moved is not None and moved[0] == self.slot else None

    def _discover(self) -> Address:
        others = [a for a in self.known if a not in self.seeds]
        random.shuffle(others)
        last: Exception | None = None
        for address in self.seeds + others:
            try:
                return self._ask(address)
            except (redis.RedisError, OSError) as exc:
                last = exc
        raise redis.ConnectionError(f"no cluster node knows the master of slot {self.slot}: {last}")

    def _ask(self, address: Address) -> Address:
        node: Any = redis.Redis(*address, **self.node_kwargs)
        try:
            # Two words: redis-py would parse "CLUSTER SLOTS" into a dict of its own.
            ranges = node.execute_command("CLUSTER", "SLOTS")
        finally:
            node.close()
        owner: Address | None = None
        for start, end, master, *replicas in ranges:
            for entry in (master, *replicas):
                found = (_text(entry[0]) or address[0], int(entry[1]))
                if found not in self.known:
                    self.known.append(found)
            if int(start) <= self.slot <= int(end):
                owner = (_text(master[0]) or address[0], int(master[1]))
        if owner is None:
            raise redis.ConnectionError(f"slot {self.slot} is not served by any master")
        return owner


def _moved(exc: redis.ResponseError | None) -> tuple[int, Address] | None:
    """The slot and new owner a MOVED reply names (``[MOVED] SLOT HOST:PORT``), else None."""
    words = str(exc).split() if exc is not None else []
    if isinstance(exc, redis.exceptions.MovedError) or words[:1] == ["MOVED"]:
        slot, address = words[-2:]
        host, _, port = address.rpartition(":")
        return int(slot), (host, int(port))
    return None


def _elsewhere(exc: redis.ResponseError) -> bool:
    return isinstance(exc, _ELSEWHERE) or str(exc).split(" ", 1)[0] in _ELSEWHERE_CODES


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class _Resolved:
    """Mixed into redis-py's connection classes: connect where the resolver says.

    A master that cannot be reached (killed, not yet replaced by its replica) is asked for again
    until ``failover_timeout`` has passed: nothing was sent on a connection that never opened,
    so waiting out a failover here is safe, and every caller gets it.
    """

    resolver: Resolver
    host: str
    port: int

    def __init__(
        self, *args: Any, resolver: Resolver, failover_timeout: float, **kwargs: Any
    ) -> None:
        self.resolver = resolver
        self.failover_timeout = failover_timeout
        super().__init__(*args, **kwargs)

    def _connect(self) -> Any:
        give_up = time.monotonic() + self.failover_timeout
        while True:
            try:
                self.host, self.port = self.resolver.address()
                return super()._connect()  # type: ignore[misc]
            except (OSError, redis.ConnectionError):
                self.resolver.redirected(None)
                if time.monotonic() >= give_up:
                    raise
                time.sleep(FAILOVER_POLL)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.ResponseError as exc:
            if not _elsewhere(exc):
                raise
            self.resolver.redirected(exc)
            self.disconnect()  # type: ignore[attr-defined]
            raise Redirected(f"{self.host}:{self.port} redirected: {exc}") from exc


class ResolvedConnection(_Resolved, KernelTimedConnection):
    """A TCP connection to wherever the resolver points."""


class ResolvedSSLConnection(_Resolved, SSLConnection):
    """A TLS connection to wherever the resolver points."""


def follows_failover(client: redis.Redis) -> bool:
    """Whether ``client`` finds a new master by itself (a Sentinel or Cluster client)."""
    return issubclass(client.connection_pool.connection_class, _Resolved)


def steer(pool: redis.ConnectionPool, topology: Topology, key: str, settings: Settings) -> None:
    """Make ``pool``'s connections go where ``topology`` says the master of ``key`` is."""
    kwargs = pool.connection_kwargs
    tls = issubclass(pool.connection_class, SSLConnection)
    node_kwargs = {k: v for k, v in kwargs.items() if k in _NODE_OPTIONS or k.startswith("ssl_")}
    if tls:
        node_kwargs["ssl"] = True
    # Discovery is a short question: never wait a blocking read's timeout for its answer.
    node_kwargs["socket_timeout"] = kwargs.get("socket_connect_timeout")
    resolver: Resolver
    if topology.kind == "sentinel":
        sentinel_kwargs = {k: v for k, v in node_kwargs.items() if k not in _CREDENTIALS}
        sentinel_kwargs["password"] = settings.sentinel_password
        resolver = SentinelResolver(topology, sentinel_kwargs)
    else:
        resolver = ClusterResolver(topology, key, node_kwargs)
    pool.connection_class = ResolvedSSLConnection if tls else ResolvedConnection
    kwargs["resolver"] = resolver
    kwargs["failover_timeout"] = settings.failover_timeout


_CREDENTIALS = frozenset({"username", "password"})
# driver_info / lib_version: connection._driver_info (no package-metadata look-up per connection).
_NODE_OPTIONS = _CREDENTIALS | {
    "socket_timeout",
    "socket_connect_timeout",
    "driver_info",
    "lib_version",
}
