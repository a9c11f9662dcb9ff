"""A private Redis Cluster (masters, each with a replica) and a Sentinel set-up, for tests.

Every process binds 127.0.0.1 on a free port and lives in a temp dir; ``cleanup`` stops all.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import redis

from drainctl.config import Settings
from drainctl.connection import connect
from drainctl.registry import Registry
from tests import polling
from tests.redis_server import RedisServer, free_port

CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
# As on managed Redis: drainctl must not need these (DEBUG is off by default since Redis 7).
NO_ADMIN_ARGS = tuple(
    arg for command in ("CONFIG", "KEYS", "MONITOR") for arg in ("--rename-command", command, "")
)


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll until ``check()`` is truthy (a test fails, never hangs)."""
    polling.wait_for(check, timeout, what, every=0.1)


def live_states(url: str, app: str) -> dict[str, str]:
    """Instance id -> announced state, read the way drainctl reads it (empty on an outage)."""
    client = connect(Settings(redis_url=url, app=app, connect_timeout=0.5))
    try:
        return {r.instance_id: str(r.doc.get("state")) for r in Registry(client, app).live()}
    except (redis.RedisError, OSError):
        return {}
    finally:
        client.close()


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, created with redis-cli; CONFIG,
    KEYS and MONITOR are disabled, as managed services do."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.replicas = replicas
        # An explicit bus port: the default (port + 10000) overflows for high free ports.
        self.nodes = [
            RedisServer(None, *CLUSTER_ARGS, *NO_ADMIN_ARGS, "--cluster-port", str(free_port()))
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming two seed nodes."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])
        return f"redis+cluster://{seeds}/0"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found: run scripts/test, which installs it")
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )
        wait_for(self._settled, "the cluster to settle")
        return self

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(port=node.port, socket_timeout=5)

    def _settled(self) -> bool:
        views = set()
        for node in self.nodes:
            client = self.client(node)
            try:
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                views.add(str(sorted(client.execute_command("CLUSTER", "SLOTS"))))
            finally:
                client.close()
        return len(views) == 1

    def node_of(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def serving(self, slot: int) -> list[RedisServer]:
        """The slot's master, then its replicas, as the cluster sees them now."""
        client = self.client(self.nodes[0])
        try:
            for start, end, *nodes in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return [self.node_of(int(node[1])) for node in nodes]
        finally:
            client.close()
        raise RuntimeError(f"no master serves slot {slot}")

    def owner(self, slot: int) -> RedisServer:
        """The master serving ``slot`` right now."""
        return self.serving(slot)[0]

    def fail_over(self, slot: int) -> RedisServer:
        """A manual CLUSTER FAILOVER of the slot's master to its replica; the new master."""
        wait_for(lambda: len(self.serving(slot)) > 1, "a replica of the slot's master")
        replica = self.serving(slot)[1]
        client = self.client(replica)
        client.execute_command("CLUSTER", "FAILOVER")
        client.close()
        wait_for(lambda: self.owner(slot).port == replica.port and self._settled(), "failover")
        return replica

    def migrate(self, slot: int) -> RedisServer:
        """Move ``slot`` and its keys to another master, as ``redis-cli --cluster reshard``
        does (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE); the new owner."""
        source = self.owner(slot)
        masters = {self.serving(s)[0].port for s in range(0, 16384, 1000)}
        target = self.node_of(next(port for port in masters if port != source.port))
        src, dst = self.client(source), self.client(target)
        try:
            src_id = src.execute_command("CLUSTER", "MYID").decode()
            dst_id = dst.execute_command("CLUSTER", "MYID").decode()
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for client in (dst, src):
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        finally:
            src.close()
            dst.close()
        wait_for(lambda: self.owner(slot).port == target.port and self._settled(), "migration")
        return target

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


class SentinelSetup:
    """A master, a replica and three sentinels watching them as ``service``."""

    def __init__(self, service: str = "drainctl-test", down_after_ms: int = 1000) -> None:
        self.service = service
        self.master = RedisServer()
        self.replica = RedisServer(None, "--replicaof", "127.0.0.1", str(self.master.port))
        self.down_after_ms = down_after_ms
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        wait_for(self._replica_synced, "the replica to sync")
        for port in self.sentinel_ports:
            self.sentinels.append(self._sentinel(port))
        wait_for(self._sentinels_ready, "the sentinels to see each other")
        return self

    def _sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self.master.dir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.master.dir}\n"
            f"logfile {self.master.dir}/sentinel-{port}.log\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} 10000\n"
        )
        binary = shutil.which("redis-server")
        assert binary is not None
        return subprocess.Popen(
            [binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _replica_synced(self) -> bool:
        info = redis.Redis(port=self.replica.port).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                state = redis.Redis(port=port).sentinel_master(self.service)
            except (redis.RedisError, OSError):
                return False
            if int(state.get("num-other-sentinels", 0)) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True

    def master_port(self) -> int:
        _, port = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(
            self.service
        )
        return int(port)

    def cleanup(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(10)
        self.replica.cleanup()
        self.master.cleanup()
