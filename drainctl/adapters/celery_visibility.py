"""Whether a Redis broker's ``visibility_timeout`` fits the app's longest task.

With ``task_acks_late`` a task's message stays unacknowledged while it runs; kombu's Redis
transport hands it to another worker once it has been unacknowledged for
``broker_transport_options["visibility_timeout"]`` seconds (default: 3600). So the timeout must
be longer than the longest task (else a task still running is delivered again and runs twice),
and not much longer (it is how long the task of a worker killed outright, by SIGKILL or the
out-of-memory killer, waits before it runs again). The longest task is known from time limits:
``task_time_limit`` and each task's ``time_limit``. A good value: the longest limit plus a
margin of a minute or half the limit, whichever is more (``suggested_visibility_timeout``).
"""

from __future__ import annotations

from typing import Any

KOMBU_DEFAULT = 3600.0
REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://", "redis+socket://")


def longest_time_limit(app: Any) -> float | None:
    """The longest hard time limit of the app's own tasks (or ``task_time_limit``), if any."""
    limits = [app.conf.task_time_limit]
    own = [task for name, task in app.tasks.items() if not name.startswith("celery.")]
    limits += [task.time_limit for task in own]
    known = [float(limit) for limit in limits if limit]
    return max(known, default=None)


def suggested_visibility_timeout(longest: float) -> float:
    """A visibility timeout for tasks of at most ``longest`` seconds."""
    return longest + max(60.0, longest / 2)


def visibility_problems(app: Any) -> list[str]:
    """What is wrong with the broker's visibility timeout for this app's tasks (Redis only)."""
    if not app.conf.task_acks_late or not str(app.conf.broker_url or "").startswith(REDIS_SCHEMES):
        return []
    options = app.conf.broker_transport_options or {}
    timeout = float(options.get("visibility_timeout", KOMBU_DEFAULT))
    longest = longest_time_limit(app)
    if longest is None:
        return [
            f"no task_time_limit: the broker's visibility_timeout ({timeout:g} s) cannot be "
            "checked against the longest task; a task running longer is delivered again while "
            "it runs (it runs twice). Set task_time_limit (or time_limit per task)"
        ]
    suggested = suggested_visibility_timeout(longest)
    if timeout <= longest:
        return [
            f"visibility_timeout ({timeout:g} s) is not above the longest task time limit "
            f"({longest:g} s): such a task is delivered again while it runs (it runs twice); "
            f"set broker_transport_options['visibility_timeout'] to {suggested:g}"
        ]
    if timeout > 2 * suggested:
        return [
            f"visibility_timeout is {timeout:g} s for tasks of at most {longest:g} s: the task of "
            f"a worker killed outright waits that long to run again; {suggested:g} would do"
        ]
    return []
