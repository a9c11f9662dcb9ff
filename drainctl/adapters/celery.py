"""Drainable Celery workers: ``install(app)`` adds a consumer bootstep with a ControlListener.

- **Drain** cancels every task queue on the worker's own event loop and waits until kombu has
  really stopped reading (Celery's ``cancel_consumer`` replies before it acts); then it waits
  until no task is reserved (running or prefetched); then it replies. At the deadline, tasks
  still running have their pool process killed: with ``task_acks_late`` and
  ``task_reject_on_worker_lost`` Celery rejects their message with requeue, so they run again
  after the deploy (kombu puts them back at the end of the queue).
- **Resume** consumes the cancelled queues again.
- **SIGTERM** (Heroku signals every process of the dyno) drains with a ``grace - margin``
  deadline, then hands over to Celery's warm shutdown; pool processes ignore SIGTERM so that
  only the drain decides when they stop.
- **Healthy**: failed tasks are counted with the last error in the heartbeat (Celery logs their
  traceback and keeps going); ``max_jobs``/``max_memory_mb`` drain the worker, then shut it down
  warm with exit code 0. They are checked every 0.25 s on the worker's event loop.

Settings for a drain that loses nothing: ``task_acks_late=True``,
``task_reject_on_worker_lost=True``, ``worker_prefetch_multiplier=1``, and on a Redis broker a
``visibility_timeout`` that fits the longest task (``celery_visibility``). ``install`` warns at
start-up when one is missing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import psutil
from celery import Celery, bootsteps
from celery.signals import worker_process_init
from celery.worker import state
from celery.worker.request import Request
from vine import promise

from drainctl.adapters.base import DrainReport, JobStats, RunningJob, WorkerOptions
from drainctl.adapters.celery_visibility import visibility_problems
from drainctl.adapters.recycle import Recycler
from drainctl.errors import DrainctlError
from drainctl.listener import ControlListener
from drainctl.shutdown import drain_on_sigterm

logger = logging.getLogger(__name__)

# Reserved requests live in a WeakSet the event loop changes; a drain checks it this often.
POLL = 0.005
STOP_GRACE = 10.0
LOOP_TIMEOUT = 5.0
RECYCLE_CHECK_EVERY = 0.25


def unsafe_settings(conf: Any) -> list[str]:
    """What in a Celery configuration can lose or delay tasks during a drain."""
    problems = []
    if not conf.task_acks_late:
        problems.append("task_acks_late is off: a task running when its worker dies is lost")
    if not conf.task_reject_on_worker_lost:
        problems.append(
            "task_reject_on_worker_lost is off: a task stopped at the drain deadline is not "
            "requeued"
        )
    if conf.worker_prefetch_multiplier != 1:
        problems.append(
            f"worker_prefetch_multiplier is {conf.worker_prefetch_multiplier}, not 1: prefetched "
            "tasks make a drain wait for more than the running ones"
        )
    return problems


def _reserved() -> list[Request]:
    while True:
        try:
            return list(state.reserved_requests)
        except RuntimeError:  # the event loop changed the set while we copied it
            continue


class CeleryAdapter:
    """Drains a Celery consumer; see the module docstring."""

    def __init__(self, consumer: Any, options: WorkerOptions) -> None:
        self.consumer = consumer
        self.stats = JobStats()
        self.recycler = Recycler(options.max_jobs, options.max_memory_mb)
        self._lock = threading.Lock()
        self._accepting = True
        self._cancelled: list[str] = []
        self._handed_back: set[str] = set()
        self._retiring = False

    # -- on the worker's event loop --------------------------------------------------------

    def _on_loop(self, func: Callable[[threading.Event], None]) -> None:
        """Run ``func`` on the consumer's event loop and wait until it sets the event."""
        done = threading.Event()
        self.consumer.call_soon(func, done)
        if not done.wait(LOOP_TIMEOUT):
            logger.warning("the Celery event loop did not run %s in time", func.__name__)

    def _cancel_all(self, done: threading.Event) -> None:
        task_consumer = self.consumer.task_consumer
        names = [queue.name for queue in task_consumer.queues] if task_consumer else []
        for name in names:
            self.consumer.cancel_task_queue(name)
        self._cancelled.extend(n for n in names if n not in self._cancelled)
        # kombu defers a cancel that lands during a read until the read is over; that read may
        # still deliver a task, so we are done only after it.
        cycle = getattr(getattr(task_consumer, "channel", None), "connection", None)
        cycle = getattr(cycle, "cycle", None)
        if cycle is not None and getattr(cycle, "_in_protected_read", False):
            cycle.after_read.add(promise(done.set))
        else:
            done.set()

    def _consume_again(self, done: threading.Event) -> None:
        names, self._cancelled = self._cancelled, []
        for name in names:
            self.consumer.add_task_queue(name)
        done.set()

    def hold_eta(self, apply_eta_task: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Wrap ``Consumer.apply_eta_task``: an ETA that comes due while drained is handed back.

        The message goes back to the broker (it is unacknowledged until the task starts) and
        keeps its ETA, so it runs once, on whichever worker consumes it next.
        """

        def apply(request: Request) -> Any:
            if self._accepting:
                return apply_eta_task(request)
            logger.info("task %s came due while drained: handing it back", request.id)
            request.reject(requeue=True)
            state.task_ready(request)
            self.consumer.qos.decrement_eventually()
            return None

        return apply

    # -- the Adapter protocol --------------------------------------------------------------

    def drain(self, deadline: float) -> DrainReport:
        """Stop consuming, wait for reserved tasks, requeue what still runs at the deadline."""
        started = time.monotonic()
        with self._lock:
            self._accepting = False
        seen = {request.id for request in _reserved()}
        self._on_loop(self._cancel_all)
        seen |= {request.id for request in _reserved()}
        late = self._wait_reserved(deadline)
        handed_back = self._stop(late) if late and not self._accepting else []
        if handed_back:
            late = self._wait_reserved(STOP_GRACE)
        now = time.monotonic()
        running = {request.id for request in late}
        return DrainReport(
            finished=sorted(seen - running - set(handed_back)),
            handed_back=handed_back,
            still_running=[
                RunningJob(r.id, r.name, round(now - (r.time_start or now), 3)) for r in late
            ],
            duration_s=round(now - started, 4),
            aborted=self._accepting,
        )

    def _wait_reserved(self, timeout: float) -> list[Request]:
        give_up = time.monotonic() + timeout
        while True:
            pending = _reserved()
            if not pending or self._accepting or time.monotonic() >= give_up:
                return [] if self._accepting else pending
            time.sleep(POLL)

    def _stop(self, late: list[Request]) -> list[str]:
        """Kill the pool processes of tasks that can be requeued; Celery requeues them."""
        stopped = []
        for request in late:
            task = request.task
            if request.worker_pid and task.acks_late and task.reject_on_worker_lost:
                logger.warning("task %s still running at the deadline: requeueing it", request.id)
                self._handed_back.add(request.id)
                try:
                    os.kill(request.worker_pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                stopped.append(request.id)
        if stopped:
            # Have the pool notice the dead processes now rather than on its 5 s timer tick.
            _await_death([r.worker_pid for r in late if r.id in stopped])
            self.consumer.call_soon(self.consumer.pool.maintain_pool)
        return stopped

    @property
    def accepting(self) -> bool:
        """False from the start of a drain until a resume: the listener's state follows it."""
        return self._accepting

    def resume(self) -> None:
        """Consume the cancelled queues again (a retiring worker stays drained)."""
        with self._lock:
            if self._retiring:
                return
            self._accepting = True
        self._on_loop(self._consume_again)

    def status(self) -> dict[str, Any]:
        """Reserved tasks and counters for the heartbeat."""
        active = len(state.active_requests)
        return {
            "in_flight": active,
            "reserved": len(state.reserved_requests),
            **self.stats.as_dict(),
            "jobs_done": max(0, state.all_total_count[0] - active),
        }

    # -- health ----------------------------------------------------------------------------

    def record_failure(self, request: Request, exc: BaseException) -> None:
        """Count a task failure (not a task we killed on purpose to requeue it)."""
        if request.id in self._handed_back:
            self._handed_back.discard(request.id)
            return
        self.stats.record_error(exc, f"{request.name}[{request.id}]")

    def check_recycle(self, listener: ControlListener) -> None:
        """On the event loop: when a limit is reached, drain in the background, then stop."""
        if self._retiring or not self.recycler.enabled:
            return
        reason = self.recycler.reason(int(self.status()["jobs_done"]))
        if reason is None:
            return
        logger.warning("worker retiring: %s", reason)
        self._retiring = True
        threading.Thread(target=self._retire, args=(listener,), daemon=True).start()

    def _retire(self, listener: ControlListener) -> None:
        listener.drain(STOP_GRACE * 3, final=True)
        state.should_stop = 0  # Celery's warm shutdown, exit code 0


def _await_death(pids: list[int], timeout: float = 2.0) -> None:
    """Wait until the killed pool processes are zombies (the pool reaps them, not us)."""
    give_up = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < give_up:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(POLL)


class CountingRequest(Request):  # type: ignore[misc]  # celery is untyped
    """Celery's request, counting failures for the heartbeat (runs in the main process)."""

    # The worker's adapter; one Celery worker per process, set by the bootstep.
    adapter: ClassVar[CeleryAdapter | None] = None

    def on_failure(self, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
        """Count the failure, then let Celery handle it."""
        if self.adapter is not None:
            exc = getattr(exc_info.exception, "exc", exc_info.exception)
            self.adapter.record_failure(self, exc)
        return super().on_failure(exc_info, *args, **kwargs)


class DrainctlStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """The consumer bootstep that runs the listener; added by ``install``."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    options = WorkerOptions()

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.listener: ControlListener | None = None

    def start(self, c: Any) -> None:
        """Start the listener once; after a consumer restart only point it at the new one."""
        adapter = CountingRequest.adapter
        if self.listener is not None and adapter is not None:
            adapter.consumer = c
            return
        for problem in unsafe_settings(c.app.conf) + visibility_problems(c.app):
            logger.warning("drainctl: unsafe Celery setting for draining: %s", problem)
        adapter = CeleryAdapter(c, self.options)
        try:
            self.listener = ControlListener(
                adapter=adapter, settings=self.options.listener_settings()
            )
        except DrainctlError as exc:
            # The worker is the user's: it keeps working, just without drainctl.
            logger.error("drainctl is disabled in this worker: %s", exc)
            return
        CountingRequest.adapter = adapter
        c.apply_eta_task = adapter.hold_eta(c.apply_eta_task)
        c.update_strategies()  # the strategies captured apply_eta_task when they were built
        self.listener.start()
        if adapter.recycler.enabled:  # no timer entry, no wake-ups, for a worker without limits
            c.timer.call_repeatedly(RECYCLE_CHECK_EVERY, adapter.check_recycle, (self.listener,))
        if threading.current_thread() is threading.main_thread():
            drain_on_sigterm(
                self.listener,
                grace=self.options.grace,
                margin=self.options.margin,
                exit_process=False,
            )

    def shutdown(self, c: Any) -> None:
        """Stop the listener with the worker."""
        if self.listener is not None:
            self.listener.stop()


def _ignore_sigterm(**kwargs: Any) -> None:
    # A pool process must outlive the dyno-wide SIGTERM: the drain decides when it stops.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def install(app: Celery, options: WorkerOptions | None = None) -> None:
    """Make ``app``'s workers drainable (call once, where the app is defined)."""
    options = options or WorkerOptions()
    app.steps["consumer"].add(type("DrainctlStep", (DrainctlStep,), {"options": options}))
    app.Task.Request = CountingRequest
    worker_process_init.connect(_ignore_sigterm, weak=False)
