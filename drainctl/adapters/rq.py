"""A drainable RQ worker: ``DrainableWorker``, a drop-in subclass of ``rq.Worker``.

It embeds a ControlListener and answers ``drain``/``resume``/``status``:

- **Drain** closes the gate and interrupts the blocking dequeue at once (``CLIENT UNBLOCK``, see
  ``drainctl.adapters.unblock``), so no job is dequeued after the drain was received; a job that
  was popped in that instant is put back at the front of its queue, untouched. The job in
  progress may finish until the deadline; then its work horse is killed and the job is put back
  at the front of its queue, same id, status ``queued``, to run once after the deploy. The reply
  lists finished and handed-back job ids.
- **Resume** lets the worker dequeue again.
- **SIGTERM** (Heroku, 30 s before SIGKILL) runs the same drain with a deadline of ``grace -
  margin``, then the worker exits 0. The work horse ignores SIGTERM (Heroku signals every process
  of the dyno), so it is never killed before the deadline.
- **Killed outright** (SIGKILL, out of memory): the next DrainableWorker requeues the job at the
  front of its queue once the dead worker's drainctl heartbeat has expired, instead of RQ failing
  it much later as abandoned (``drainctl.adapters.rq_abandoned``; once per job, opt out with
  ``requeue_abandoned``); counted as ``jobs_requeued_abandoned`` in the heartbeat.
- **Healthy**: a failed job is counted with its error in the heartbeat (RQ itself keeps the
  traceback in the job's result); ``max_jobs``/``max_memory_mb`` retire the worker between jobs.

Forking workers only (``rq.Worker`` and its subclasses): a job running in the worker's own
process (``SimpleWorker``) cannot be stopped at the deadline.

    worker = DrainableWorker(["default"], connection=redis, options=WorkerOptions(max_jobs=500))
    worker.work()
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

import redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.job import Job as RqJob
from rq.job import JobStatus

from drainctl.adapters.base import WorkerOptions
from drainctl.adapters.jobs import Job, JobsAdapter
from drainctl.adapters.rq_abandoned import INSTANCE_FIELD, AbandonedJobs, die_with_parent
from drainctl.adapters.unblock import Interrupted, InterruptiblePop
from drainctl.connection import tls_options, translate_outage
from drainctl.listener import ControlListener
from drainctl.shutdown import drain_on_sigterm

logger = logging.getLogger(__name__)

# Why the worker retires after a SIGTERM drain (see JobsAdapter.retire).
SIGTERM_REASON = "SIGTERM"


class _GatedRedis(redis.Redis):
    """The worker's client: RQ's blocking pops go through an InterruptiblePop."""

    pops: InterruptiblePop

    def blpop(self, *args: Any, **kwargs: Any) -> Any:
        return self.pops.call(lambda client: client.blpop(*args, **kwargs))

    def blmove(self, *args: Any, **kwargs: Any) -> Any:
        return self.pops.call(lambda client: client.blmove(*args, **kwargs))


class DrainableWorker(Worker):
    """``rq.Worker`` plus a ControlListener, drains that lose nothing, SIGTERM and recycling.

    ``requeue_abandoned``: requeue jobs of DrainableWorkers that died outright on all queues
    (True, the default), none (False), or the named queues only.
    """

    def __init__(
        self,
        queues: str | Queue | Sequence[str] | Sequence[Queue],
        *args: Any,
        options: WorkerOptions | None = None,
        requeue_abandoned: bool | Collection[str] = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(queues, *args, **kwargs)
        self.options = options or WorkerOptions()
        self.requeue_abandoned = requeue_abandoned
        self._rescuing = threading.Event()
        self.jobs = JobsAdapter(
            wakeup=self._interrupt_dequeue,
            on_deadline=self._stop_late_jobs,
            max_jobs=self.options.max_jobs,
            max_memory_mb=self.options.max_memory_mb,
        )
        self.pops = InterruptiblePop(self.connection, lambda: self.jobs.accepting)
        gated = _GatedRedis(connection_pool=self.connection.connection_pool)
        gated.pops = self.pops
        self.connection = gated
        self.listener: ControlListener | None = None
        self._sigterm_done: threading.Event | None = None
        self._running: Job | None = None
        self._requeue_id: str | None = None
        self._requeued = False

    # -- lifecycle -------------------------------------------------------------------------

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop, with the listener running alongside it."""
        self.listener = ControlListener(
            adapter=self.jobs, settings=self.options.listener_settings()
        )
        self.listener.start()
        self._start_rescuer(self.listener)
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            self._rescuing.clear()
            if self._sigterm_done is not None and self.jobs.retired == SIGTERM_REASON:
                self._sigterm_done.wait(self.options.margin)
            self.listener.stop()
            self.pops.close()

    def register_birth(self) -> None:
        """RQ's registration, plus our drainctl instance id, by which peers know we are gone."""
        super().register_birth()  # type: ignore[no-untyped-call]  # RQ leaves it untyped
        assert self.listener is not None
        self.connection.hset(self.key, INSTANCE_FIELD, self.listener.identity.instance_id)

    def _start_rescuer(self, listener: ControlListener) -> None:
        wanted = self.requeue_abandoned
        queues = [q for q in self.queues if wanted is True or (wanted and q.name in wanted)]
        if not queues:
            return
        rescuer = AbandonedJobs(
            self.connection,
            listener.identity.app,
            queues,
            lambda job_id: self.jobs.count("jobs_requeued_abandoned"),
        )
        every = 3 * listener.settings.heartbeat_interval
        self._rescuing.set()
        # Once now, before RQ's start-up maintenance would fail what has been abandoned longest.
        self._rescue_once(rescuer, failing=False)
        threading.Thread(
            target=self._rescue, args=(rescuer, every), name="drainctl-rq-rescue", daemon=True
        ).start()

    def _rescue(self, rescuer: AbandonedJobs, every: float) -> None:
        failing = False
        while self._rescuing.is_set():
            time.sleep(every)
            failing = self._rescue_once(rescuer, failing)

    def _rescue_once(self, rescuer: AbandonedJobs, failing: bool) -> bool:
        """One pass; whether it failed (an outage is logged once, not at every pass)."""
        try:
            rescuer.rescue()
        except Exception as exc:  # a rescue pass must never take the worker down
            if not failing:
                logger.warning("could not look for abandoned jobs: %s", exc)
            return True
        return False

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        assert self.listener is not None
        self._sigterm_done = drain_on_sigterm(
            self.listener,
            grace=self.options.grace,
            margin=self.options.margin,
            before_exit=[lambda report: self.jobs.retire(SIGTERM_REASON)],
            exit_process=False,
        )

    def setup_work_horse_signals(self) -> None:
        """The horse ignores SIGINT and SIGTERM: the worker decides when to stop it. It dies
        with the worker, so a job is never requeued while an orphaned horse still runs it."""
        die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def fork_work_horse(self, job: RqJob, queue: Queue) -> None:
        """Fork with SIGTERM blocked, so a dyno-wide SIGTERM cannot hit the new horse before it
        ignores the signal; the horse never unblocks it, the worker does at once."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            super().fork_work_horse(job, queue)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    # -- dequeue ---------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[RqJob, Queue] | None:
        """Wait while drained, dequeue while not; a job popped as a drain began goes back."""
        while True:
            self._wait_for_gate()
            try:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Interrupted:
                continue
            if result is None:
                return None
            job, queue = result
            self._running = self.jobs.start(job.id)
            if self._running is not None:
                return result
            self._give_back(job, queue)

    def _wait_for_gate(self) -> None:
        while not self.jobs.wait_until_accepting(timeout=min(self.dequeue_timeout, 15)):
            if self.jobs.retired is not None:
                raise StopRequested()
            self.heartbeat()  # drained for a while (a deploy): stay visible to RQ

    def _interrupt_dequeue(self) -> None:
        self.pops.interrupt()

    def _give_back(self, job: RqJob, queue: Queue) -> None:
        """Put a job that was popped but never started back at the front of its queue."""
        with self.connection.pipeline() as pipe:
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            queue.push_job_id(job.id, pipeline=pipe, at_front=True)
            pipe.execute()
        logger.info("handed job %s back to the front of %s", job.id, queue.name)

    # -- execution -------------------------------------------------------------------------

    def execute_job(self, job: RqJob, queue: Queue) -> None:
        """Run the job in a work horse, as RQ does, counted in flight by the adapter."""
        running, self._running = self._running, None
        if running is None:  # dequeued by a path other than ours: still run it
            super().execute_job(job, queue)
            return
        with running:
            super().execute_job(job, queue)
            self._settle(job, running)

    def _settle(self, job: RqJob, running: Job) -> None:
        if self._requeued:
            running.hand_back()
        elif job.get_status(refresh=True) == JobStatus.FAILED:
            result = job.latest_result()
            message = (result.exc_string or "") if result is not None else ""
            last_line = message.strip().splitlines()[-1:] or ["failed"]
            running.fail("JobFailed", last_line[0])
        self._requeue_id, self._requeued = None, False

    def _stop_late_jobs(self, late: list[Job]) -> None:
        """At the drain deadline: kill the horse; ``handle_job_failure`` then requeues the job."""
        for running in late:
            logger.warning("job %s still running at the deadline: requeueing it", running.name)
            self._requeue_id = running.name
            self.kill_horse(signal.SIGKILL)

    def handle_job_failure(
        self,
        job: RqJob,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Any = None,
    ) -> None:
        """RQ's failure handling, except for a job we stopped at the deadline: requeue it."""
        if job.id != self._requeue_id:
            super().handle_job_failure(
                job,
                queue,
                started_job_registry=started_job_registry,
                exc_string=exc_string,
                execution=execution,
            )
            return
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            job.set_status(JobStatus.QUEUED, pipeline=pipe)
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            queue.push_job_id(job.id, pipeline=pipe, at_front=True)
            pipe.execute()
        self._requeued = True
        logger.warning("job %s requeued at the front of %s", job.id, queue.name)


def serve(
    queues: list[str], options: WorkerOptions, *, name: str | None, burst: bool, verbose: bool
) -> None:
    """Run a DrainableWorker on ``queues`` until it retires (what ``drainctl rq-worker`` does)."""
    settings = options.listener_settings()
    with translate_outage(settings):
        worker = DrainableWorker(
            queues,
            name=name,
            connection=redis.Redis.from_url(settings.redis_url, **tls_options(settings)),
            options=options,
        )
        worker.work(burst=burst, logging_level="DEBUG" if verbose else "INFO")
