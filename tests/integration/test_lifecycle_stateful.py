"""The listener's state machine tested as one: random interleavings of drain, resume, fences set,
lifted, lost and expired, and SIGTERM, fired at a real listener on a real redis-server. After each
step the instance must settle in the state that the last command and the live fences call for."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from drainctl.config import Settings
from drainctl.fence import Fence, FenceStore
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.protocol import Command, Reply, Request, State
from tests.integration.test_lifecycle import LateGate, push_requests, server_now
from tests.integration.test_listener import run_job_in_thread

RELEASE = "v1"
BEAT = 0.1
SETTLE = 5.0
BURST = (Command.DRAIN, Command.RESUME)


@pytest.mark.slow
def test_listener_state_machine(settings: Settings, redis_client: redis.Redis) -> None:
    """Whatever the order and overlap of events, the final state is the one they call for."""
    base = settings.replace(process_type="worker", release=RELEASE, heartbeat_interval=BEAT)

    class ListenerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.jobs = LateGate(delay=0.0)
            self.listener = ControlListener(adapter=self.jobs, settings=base).start()
            self.keys = Keys(self.listener.identity.app)
            self.store = FenceStore(redis_client, self.listener.identity.app)
            self.pending: list[Request] = []
            self.workers: list[Any] = []
            # The model: what was asked last, and what holds the instance drained regardless.
            self.commanded_drained = False
            self.fenced = False
            self.key_present = False
            self.final = False

        def teardown(self) -> None:
            for worker in self.workers:
                worker.join()
            self.listener.stop()
            redis_client.delete(self.keys.fence(RELEASE))

        # -- events ----------------------------------------------------------------------

        @rule(
            commands=st.lists(
                st.sampled_from([Command.DRAIN, Command.RESUME]), min_size=1, max_size=3
            ),
            gate_delay=st.sampled_from([0.0, 0.003, 0.02]),
            job=st.sampled_from([0.0, 0.05, 0.3]),
        )
        def send(self, commands: list[Command], gate_delay: float, job: float) -> None:
            """A burst of drains and resumes queued back to back, maybe with a job in flight."""
            self.jobs.delay = gate_delay
            if job and self.jobs.accepting:
                self.workers.append(run_job_in_thread(self.jobs, "job", job))
            args = {Command.DRAIN: {"deadline": 2.0}, Command.RESUME: {}}
            self.pending += push_requests(
                redis_client, self.listener, *((c, args[c]) for c in commands)
            )
            for command in commands:
                if command is Command.DRAIN:
                    self.commanded_drained = True
                elif not (self.fenced and self.key_present) and not self.final:
                    # A resume is refused while the fence key holds; once it is gone, it lifts.
                    self.fenced = self.commanded_drained = False

        @rule()
        def fence_with_a_drain(self) -> None:
            """A deploy: fence set, then a drain carrying it."""
            fence = self._fence(60.0)
            self.pending += push_requests(
                redis_client,
                self.listener,
                (Command.DRAIN, {"deadline": 2.0, "fences": [fence.as_arg()]}),
            )
            self.fenced = self.commanded_drained = True

        @rule()
        def fence_found_at_registration(self) -> None:
            """A fence the instance finds when it registers again (as after an outage)."""
            self._fence(60.0)
            self._reregister()
            self.fenced = True

        @rule()
        def fence_key_lost(self) -> None:
            """The key vanishes (deleted, evicted) and the instance re-registers: lifts nothing."""
            redis_client.delete(self.keys.fence(RELEASE))
            self.key_present = False
            self._reregister()

        @rule()
        def lift_and_resume(self) -> None:
            """A rollback or `drainctl unfence`: delete the fence, then resume."""
            self.store.lift([RELEASE], "deploy")
            self.key_present = False
            self.pending += push_requests(redis_client, self.listener, (Command.RESUME, {}))
            if not self.final:
                self.fenced = self.commanded_drained = False

        @rule()
        def short_fence_expires(self) -> None:
            """A deploy that never came back: its fence expires on its own (and resumes)."""
            fence = self._fence(0.4)
            self.pending += push_requests(
                redis_client,
                self.listener,
                (Command.DRAIN, {"deadline": 2.0, "fences": [fence.as_arg()]}),
            )
            self._wait_replies()
            time.sleep(0.4 + 4 * BEAT)
            if not self.fenced:  # a longer fence still holds it otherwise
                self.commanded_drained = False

        @rule()
        def sigterm(self) -> None:
            """SIGTERM's drain: final."""
            self._wait_replies()
            self.listener.drain(1.0, final=True)
            self.final = True

        # -- the check -------------------------------------------------------------------

        @invariant()
        def settles_where_the_model_says(self) -> None:
            self._wait_replies()
            drained = self.final or self.fenced or self.commanded_drained
            want = State.DRAINED if drained else State.RUNNING
            give_up = time.monotonic() + SETTLE
            while not (self.listener.state is want and self.jobs.accepting is not drained):
                assert time.monotonic() < give_up, (
                    f"wanted {want.value}, listener says {self.listener.state.value}, "
                    f"adapter accepting={self.jobs.accepting}"
                )
                time.sleep(0.01)

        # -- helpers ---------------------------------------------------------------------

        def _fence(self, ttl: float) -> Fence:
            fence = Fence(RELEASE, ("worker",), server_now(redis_client) + ttl, "deploy", 2.0)
            self.store.set(fence, ttl)
            self.key_present = ttl > 1
            return fence

        def _reregister(self) -> None:
            key = self.keys.instance(self.listener.identity.instance_id)
            redis_client.delete(key)
            give_up = time.monotonic() + SETTLE
            while not redis_client.exists(key):
                assert time.monotonic() < give_up, "no re-registration"
                time.sleep(0.01)
            time.sleep(2 * BEAT)

        def _wait_replies(self) -> None:
            for request in self.pending:
                popped = redis_client.blpop([request.reply_to], 10)
                assert popped is not None, f"no reply to {request.command.value}"
                Reply.decode(popped[1])
                redis_client.delete(request.reply_to)
            self.pending = []

    run_state_machine_as_test(
        ListenerMachine,
        settings=hypothesis_settings(
            max_examples=12,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
