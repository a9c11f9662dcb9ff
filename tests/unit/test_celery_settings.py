"""Which Celery settings are unsafe for draining (pure configuration, no worker)."""

from __future__ import annotations

from celery import Celery

from drainctl.adapters.celery import unsafe_settings
from drainctl.adapters.celery_visibility import suggested_visibility_timeout, visibility_problems


def test_defaults_are_reported_unsafe():
    """Celery's defaults ack early, drop tasks of lost workers and prefetch four per process."""
    problems = unsafe_settings(Celery("t", set_as_current=False).conf)
    assert [p.split()[0] for p in problems] == [
        "task_acks_late",
        "task_reject_on_worker_lost",
        "worker_prefetch_multiplier",
    ]


def test_recommended_settings_are_safe():
    """With the three recommended settings nothing is reported."""
    app = Celery("t", set_as_current=False)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1
    )
    assert unsafe_settings(app.conf) == []


def redis_app(**conf: object) -> Celery:
    app = Celery("t", broker="redis://localhost:6379/0", set_as_current=False)
    app.conf.update(task_acks_late=True, **conf)
    return app


def test_visibility_timeout_must_outlast_the_longest_task():
    """A visibility timeout at or below the longest time limit redelivers running tasks; the
    warning names a value that fits."""
    app = redis_app(task_time_limit=300, broker_transport_options={"visibility_timeout": 300})
    (problem,) = visibility_problems(app)
    assert "runs twice" in problem
    assert "450" in problem  # 300 s plus half of it
    assert suggested_visibility_timeout(30) == 90  # at least a minute of margin


def test_visibility_timeout_far_above_the_longest_task_is_reported():
    """kombu's default hour for tasks of at most a minute delays a killed worker's task."""
    app = redis_app(task_time_limit=60)
    (problem,) = visibility_problems(app)
    assert "3600 s for tasks of at most 60 s" in problem


def test_a_task_time_limit_counts_and_a_fitting_timeout_passes():
    """Per-task time limits count as well; a timeout just above the longest passes."""
    app = redis_app(task_time_limit=60, broker_transport_options={"visibility_timeout": 400})

    @app.task(time_limit=200, shared=False)
    def slow() -> None: ...

    assert visibility_problems(app) == []
    assert "no task_time_limit" in visibility_problems(redis_app())[0]
    assert visibility_problems(Celery("t", broker="amqp://", set_as_current=False)) == []
