"""The floor: a process of K bare echo threads, the least any Redis request/reply can do.

Each thread holds one raw connection and, per request, sends ``RPUSH reply pong`` and the next
``BLPOP inbox`` in one round trip: no JSON, no registry, no signing, no expiry. A request is the
reply list's name. Prints one JSON line (pid, inbox keys) once every thread is connected, then
runs until its stdin closes. ``floor.py``'s requester pipelines one LPUSH per inbox and BLMPOPs
the replies: together, three commands per echo and request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

import redis

BLOCK_S = 1


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True, help="inbox keys are PREFIX:inbox:N")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1)
    return parser.parse_args()


def echo(connection: Any, inbox: str, stopping: threading.Event) -> None:
    """BLPOP the inbox; answer each request with the next BLPOP in the same round trip."""
    commands: list[tuple[Any, ...]] = [("BLPOP", inbox, BLOCK_S)]
    while not stopping.is_set():
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        popped = [connection.read_response() for _ in commands][-1]
        if popped is None:
            commands = [("BLPOP", inbox, BLOCK_S)]
        else:
            commands = [("RPUSH", popped[1], b"pong"), ("BLPOP", inbox, BLOCK_S)]


def main() -> None:
    args = parse()
    pool = redis.ConnectionPool.from_url(args.redis_url, max_connections=args.count)
    stopping = threading.Event()
    inboxes = [f"{args.prefix}:inbox:{args.first + i}" for i in range(args.count)]
    threads = []
    for inbox in inboxes:
        connection = pool.get_connection()
        connection.connect()
        thread = threading.Thread(target=echo, args=(connection, inbox, stopping), daemon=True)
        thread.start()
        threads.append(thread)
    print(json.dumps({"pid": os.getpid(), "inboxes": inboxes}), flush=True)
    sys.stdin.read()
    stopping.set()
    for thread in threads:
        thread.join(BLOCK_S + 1)


if __name__ == "__main__":
    main()
