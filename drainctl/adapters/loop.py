"""LoopWorker: a hand-written worker loop that cannot forget to ack, hand back or drain.

``JobsAdapter`` and ``ReliableQueue`` are the parts; this puts them together the one right way::

    worker = LoopWorker("jobs")           # app, dyno, release and REDIS_URL from the environment
    for job in worker.jobs():             # pops, starts, acks; SIGTERM drains, then exits 0
        with job:                         # errors logged and counted, never raised
            process(job.payload)

``jobs()`` starts the listener, installs the SIGTERM drain (main thread; ``sigterm=False`` to
skip), recovers dead workers' jobs when idle, and yields one ``LoopJob`` at a time. A job is
acknowledged when its ``with`` block ends, whether it succeeded or raised (a failure is final;
retry inside ``process`` if you want retries); a payload popped as a drain began goes back to the
front of the queue without being yielded. Without ``with job`` a job is acknowledged when the
loop asks for the next one, and handed back if an exception leaves the loop. The queue uses the
listener's connection settings (so ``REDIS_URL`` alone is enough).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import TracebackType

from drainctl.adapters.base import WorkerOptions
from drainctl.adapters.jobs import Job, JobsAdapter
from drainctl.adapters.reliable_queue import RECOVER_AFTER, ReliableQueue
from drainctl.connection import connect
from drainctl.errors import ConfigError
from drainctl.listener import ControlListener
from drainctl.shutdown import drain_on_sigterm

logger = logging.getLogger(__name__)

# Job names in the drain report and last_error: the start of the payload is enough.
_NAME_CHARS = 80


class LoopJob:
    """One popped payload in flight; a context manager that acknowledges it on exit."""

    def __init__(self, worker: LoopWorker, payload: bytes, job: Job) -> None:
        self.payload = payload
        self._worker = worker
        self._job = job
        self.settled = False

    def __enter__(self) -> LoopJob:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # KeyboardInterrupt/SystemExit stop the worker mid-job: the job did not finish.
        self.settle(done=exc is None or isinstance(exc, Exception), exc=exc)
        return isinstance(exc, Exception)

    def settle(self, *, done: bool, exc: BaseException | None = None) -> None:
        """Acknowledge (done, or failed for good) or hand back, once, while still in flight."""
        if self.settled:
            return
        self.settled = True
        queue = self._worker.queue
        # Settled before leaving the in-flight count, so a drain that ends right after the job
        # never lets the process exit with a finished job still in the processing list.
        if done:
            queue.ack(self.payload)
        else:
            queue.hand_back(self.payload)
            self._job.hand_back()
        self._job.__exit__(type(exc) if exc else None, exc, None)


class LoopWorker:
    """Takes jobs from the Redis list ``queue`` (producers ``RPUSH`` payloads) under drainctl.

    ``options``: settings (default: the environment), ``max_jobs``/``max_memory_mb``
    (recycling: ``jobs()`` ends and the process should exit 0), ``grace``/``margin`` (the SIGTERM
    drain deadline is ``grace - margin``). ``pop_timeout``: seconds an idle pop waits before
    looking for dead workers' jobs. ``recover_after``: see ``ReliableQueue``.
    """

    def __init__(
        self,
        queue: str,
        *,
        options: WorkerOptions | None = None,
        pop_timeout: float = 5.0,
        recover_after: float = RECOVER_AFTER,
        sigterm: bool = True,
    ) -> None:
        self.options = options if options is not None else WorkerOptions()
        self.adapter = JobsAdapter(
            wakeup=self._interrupt,
            max_jobs=self.options.max_jobs,
            max_memory_mb=self.options.max_memory_mb,
        )
        self.listener = ControlListener(
            adapter=self.adapter, settings=self.options.listener_settings()
        )
        self.pop_timeout = pop_timeout
        self.sigterm = sigterm
        consumer = self.listener.identity.instance_id
        self.queue = ReliableQueue(
            connect(self.listener.settings, max_connections=2, name=f"drainctl-queue-{consumer}"),
            queue,
            app=self.listener.identity.app,
            consumer=consumer,
            gate=lambda: self.adapter.accepting,
            recover_after=recover_after,
            on_lost=lambda _payload: self.adapter.count("jobs_lost"),
        )

    def _interrupt(self) -> None:
        # Called by the adapter when a drain closes the gate; queue exists by then.
        self.queue.interrupt()

    def jobs(self) -> Iterator[LoopJob]:
        """Yield jobs until the worker retires (recycling) or the loop is left."""
        self._start()
        current: LoopJob | None = None
        try:
            while self.adapter.retired is None:
                current = self._next()
                if current is None:
                    continue
                yield current
                current.settle(done=True)  # the loop came back for more: the job is done
        finally:
            if current is not None:
                current.settle(done=False)  # left the loop mid-job: run it again later
            self.close()

    def _start(self) -> None:
        if self.sigterm and threading.current_thread() is not threading.main_thread():
            raise ConfigError(
                "LoopWorker.jobs() installs the SIGTERM drain, which only the main thread can "
                "do: call it from the main thread or pass sigterm=False"
            )
        self.listener.start()
        if self.sigterm:
            drain_on_sigterm(
                self.listener,
                grace=self.options.grace,
                margin=self.options.margin,
                before_exit=[lambda _report: self._close_queue()],
            )
        self.queue.recover()

    def _next(self) -> LoopJob | None:
        if not self.adapter.wait_until_accepting(timeout=self.pop_timeout):
            return None
        payload = self.queue.pop(self.pop_timeout)
        if payload is None:
            self.queue.recover()  # idle: a worker may have died meanwhile
            return None
        job = self.adapter.start(payload[:_NAME_CHARS].decode(errors="replace"))
        if job is None:  # a drain began while we popped
            self.queue.hand_back(payload)
            return None
        return LoopJob(self, payload, job)

    def close(self) -> None:
        """Leave the queue and stop the listener (``jobs()`` does this when it ends)."""
        self._close_queue()
        self.listener.stop()

    def _close_queue(self) -> None:
        try:
            self.queue.close()
        except Exception:  # Redis gone at exit: the helper and our heartbeat expire anyway
            logger.warning("could not leave queue %s cleanly", self.queue.name, exc_info=True)
