"""How a listener answers requests: vet each one, then answer ping, status and resume at once
and queue a drain, whose reply goes out when it is over (with the serve loop's next read when it
is over within QUICK_DRAIN, else from the drain thread).

Vetting, in order: signature and replay (``Gate``, with a secret), a reply list inside the app's
namespace, not expired, not seen before. Expected refusals (a fenced release asked to resume, a
drain superseded by a later resume, a bad argument) are one WARNING line and an error reply; an
unexpected failure is logged with its traceback and also answered.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from drainctl.adapters.base import DrainReport
from drainctl.connection import REDIS_ERRORS
from drainctl.errors import DrainctlError, ProtocolError
from drainctl.fence import Change
from drainctl.lifecycle import Expired, Superseded
from drainctl.protocol import Command, Reply, Request

if TYPE_CHECKING:
    from drainctl.listener import ControlListener

logger = logging.getLogger(__name__)

_SEEN_REQUESTS = 1024
# A drain with nothing in flight is over at once (on this thread, when the adapter can tell,
# else as soon as the drain thread runs it); the serve loop waits this long for it, so its reply
# goes out with the next read (one round trip, no second connection), not from the drain thread.
QUICK_DRAIN = 0.05


class Dispatcher:
    """The request side of one ControlListener."""

    def __init__(self, listener: ControlListener) -> None:
        self.listener = listener
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._handlers: dict[Command, Callable[[Request], dict[str, Any]]] = {
            Command.PING: lambda request: {"replied_at": listener.clock.now()},
            Command.STATUS: lambda request: listener.heartbeat_doc(),
            Command.RESUME: self._resume_request,
        }

    def receive(self, raw: bytes) -> tuple[Request, Reply] | None:
        """Vet and dispatch one request; returns the answer the serve loop should send."""
        try:
            request = Request.decode(raw, self.listener.gate)
        except ProtocolError as exc:
            logger.warning("rejected a control message: %s", exc)
            return None
        if not request.reply_to.startswith(self.listener.keys.base):
            # Never write outside the app's namespace, whatever a message asks for.
            logger.warning(
                "rejected request %s replying outside %s", request.id, self.listener.keys.base
            )
            return None
        if request.expires_at < self.listener.clock.now():
            logger.info("dropped expired %s request %s", request.command.value, request.id)
            return None
        if request.id in self._seen:
            logger.info("ignored a repeated request %s", request.id)
            return None
        self._seen[request.id] = None
        while len(self._seen) > _SEEN_REQUESTS:
            self._seen.popitem(last=False)
        if request.command is Command.DRAIN:
            return self._drain_request(request)
        return request, self._respond(request, self._handlers[request.command])

    def _drain_request(self, request: Request) -> tuple[Request, Reply] | None:
        """Queue the drain in arrival order; its reply is sent when it is over: by the serve
        loop with its next read when that is soon (nothing in flight), else from the drain
        thread."""
        deadline = request.args.get("deadline", 30.0)
        fences = request.args.get("fences", [])
        if type(deadline) not in (int, float) or deadline < 0 or not isinstance(fences, list):
            return request, self._reply(
                request, error=f"drain deadline must be a non-negative number, got {deadline!r}"
            )
        # Sent by a deploy, signed with the request: this release stays drained.
        for fence in fences:
            if self.listener.deploy_fence.observe(fence, signed=True) is Change.FENCED:
                self.listener.lifecycle.deploy_fenced(None)
        future = self.listener.lifecycle.drain(float(deadline), request.expires_at)
        if not concurrent.futures.wait([future], QUICK_DRAIN).done:
            self.listener.beat_soon()  # the registry shows it draining meanwhile
            # Called at once, here, if it ended since: then this thread replies.
            future.add_done_callback(lambda done: self._answer(request, done))
            return None
        if isinstance(future.exception(), Expired):
            logger.info("dropped drain request %s: %s", request.id, future.exception())
            return None
        return request, self._respond(request, lambda request: self._drain_outcome(future.result()))

    def _drain_outcome(self, report: DrainReport) -> dict[str, Any]:
        if report.aborted:
            raise _IncompleteDrain("aborted: a resume arrived before the drain completed", report)
        if not report.complete:
            names = ", ".join(job.name for job in report.still_running)
            raise _IncompleteDrain(f"still running at the deadline: {names}", report)
        return report.as_dict()

    def _resume_request(self, request: Request) -> dict[str, Any]:
        if self.listener.lifecycle.final:
            raise Refused("shutting down (SIGTERM or retiring): it stays drained")
        was_fenced = self.listener.deploy_fence.fenced
        refusal = self.listener.deploy_fence.refusal(self.listener.redis)
        if refusal is not None:
            raise Refused(refusal)
        if was_fenced:
            self.listener.lifecycle.deploy_fence_lifted()
        return self.listener.resume()

    def _answer(self, request: Request, done: Future[DrainReport]) -> None:
        """Reply to a drain that took longer than QUICK_DRAIN once it is over (called on the
        drain thread)."""
        if isinstance(done.exception(), Expired):
            logger.info("dropped drain request %s: %s", request.id, done.exception())
            return
        reply = self._respond(request, lambda request: self._drain_outcome(done.result()))
        try:
            self.listener.inbox.reply(
                request, reply, self.listener.clock.now(), self.listener.state_write()
            )
        except REDIS_ERRORS as exc:
            self.listener.outage.failed(exc)

    def _respond(self, request: Request, handler: Callable[[Request], dict[str, Any]]) -> Reply:
        try:
            return self._reply(request, data=handler(request))
        except _IncompleteDrain as exc:
            return self._reply(request, data=exc.report.as_dict(), error=str(exc))
        except (ProtocolError, Refused, Superseded) as exc:  # by design: one line, no traceback
            logger.warning("%s request %s refused: %s", request.command.value, request.id, exc)
            return self._reply(request, error=str(exc))
        except Exception as exc:
            logger.exception("%s request %s failed", request.command.value, request.id)
            return self._reply(request, error=f"{type(exc).__name__}: {exc}")

    def _reply(
        self, request: Request, data: dict[str, Any] | None = None, error: str | None = None
    ) -> Reply:
        return Reply(
            request_id=request.id,
            instance=self.listener.instance_doc,
            state=self.listener.state.value,
            ok=error is None,
            data=data or {},
            error=error,
        )


class Refused(DrainctlError):
    """A request the listener declines by design (a fenced release's resume): no traceback."""


class _IncompleteDrain(DrainctlError):
    """A drain that was aborted or reached its deadline with work running: an error reply."""

    def __init__(self, message: str, report: DrainReport) -> None:
        super().__init__(message)
        self.report = report
