"""Jobs of a DrainableWorker that died outright (SIGKILL, out of memory), put back to run once.

RQ notices such a job only when its started-registry entry expires (about a minute and a half
after the last heartbeat) and then fails it (``AbandonedJobError``) unless it was enqueued with
a ``Retry``. drainctl knows sooner and for sure: the dead worker's drainctl heartbeat has expired
(each DrainableWorker writes its drainctl instance id into its RQ worker hash, field
``drainctl_instance``). Every DrainableWorker looks at start-up, then every three heartbeats,
through the started registries of its queues. A job whose worker is gone that way (or whose RQ
worker hash has expired altogether, as it does about 90 s after any worker's last heartbeat) is
taken out of the registry (one ``ZREM`` inside a ``WATCH``ed transaction: of several rescuers,
one wins) and pushed back at the **front** of its queue, status ``queued``, with
``job.meta["drainctl_abandoned"]`` counting the rescues. A job abandoned a second time is left
to RQ, which fails it as before.

Opt out per queue (``DrainableWorker(requeue_abandoned=[...])``, the queues that opt in, or
``False``) or per job (``job.meta["drainctl_requeue_abandoned"] = False``).

The work horse dies with its worker (``PR_SET_PDEATHSIG``, see ``die_with_parent``), so a job is
never requeued while a horse orphaned by a killed worker still runs it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import Callable, Iterable
from typing import cast

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from drainctl.keys import Keys

logger = logging.getLogger(__name__)

INSTANCE_FIELD = "drainctl_instance"
RESCUES = "drainctl_abandoned"
OPT_OUT = "drainctl_requeue_abandoned"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a work horse: be killed when the worker dies (Linux; elsewhere a no-op)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(1)


class AbandonedJobs:
    """Finds and requeues the jobs of gone DrainableWorkers on some queues."""

    def __init__(
        self,
        connection: redis.Redis,
        app: str,
        queues: Iterable[Queue],
        on_requeued: Callable[[str], None],
    ) -> None:
        self.connection = connection
        self.keys = Keys(app)
        self.queues = list(queues)
        self.on_requeued = on_requeued
        self.left_to_rq: set[str] = set()  # abandoned twice: said once, then left alone

    def rescue(self) -> int:
        """Requeue what gone workers left in the started registries; how many jobs."""
        requeued = 0
        for queue in self.queues:
            registry = StartedJobRegistry(queue=queue).key
            entries: dict[str, list[str]] = {}
            for raw in cast("list[bytes]", self.connection.zrange(registry, 0, -1)):
                entry = raw.decode()
                entries.setdefault(entry.split(":", 1)[0], []).append(entry)
            for job_id, job_entries in entries.items():
                job = self._abandoned(job_id)
                if job is not None and self._requeue(job, queue, registry, job_entries):
                    requeued += 1
        return requeued

    def _abandoned(self, job_id: str) -> RqJob | None:
        """The job, if it is running under a DrainableWorker that is gone and may be requeued."""
        try:
            job = RqJob.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            return None
        if job.get_status(refresh=False) != JobStatus.STARTED or not job.worker_name:
            return None
        if job.meta.get(OPT_OUT) is False:
            return None
        if not self._worker_gone(f"rq:worker:{job.worker_name}"):
            return None
        if job.meta.get(RESCUES, 0) >= 1:
            if job.id not in self.left_to_rq:
                logger.warning("job %s abandoned a second time: left to RQ (it fails it)", job.id)
                self.left_to_rq.add(job.id)
            return None
        return job

    def _worker_gone(self, worker_key: str) -> bool:
        """A DrainableWorker whose drainctl heartbeat expired, or any worker whose RQ hash did
        (RQ's own heartbeat, about 90 s while a job runs, stopped)."""
        instance = cast("bytes | None", self.connection.hget(worker_key, INSTANCE_FIELD))
        if instance is None:
            return not self.connection.exists(worker_key)
        return not self.connection.exists(self.keys.instance(instance.decode()))

    def _requeue(self, job: RqJob, queue: Queue, registry: str, entries: list[str]) -> bool:
        job.meta[RESCUES] = job.meta.get(RESCUES, 0) + 1
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(registry)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                if not all(pipe.zscore(registry, e) is not None for e in entries):
                    return False  # another worker rescued it, or it finished
                pipe.multi()
                pipe.zrem(registry, *entries)
                pipe.hset(job.key, "meta", job._serialize_meta())
                job.set_status(JobStatus.QUEUED, pipeline=pipe)
                pipe.lrem(queue.intermediate_queue_key, 0, job.id)
                queue.push_job_id(job.id, pipeline=pipe, at_front=True)
                pipe.execute()
            except redis.WatchError:
                return False  # the registry changed: look again next time
        logger.warning(
            "job %s of a worker that died outright requeued at the front of %s", job.id, queue.name
        )
        self.on_requeued(job.id)
        return True
