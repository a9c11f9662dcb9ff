"""Which Celery settings are unsafe for draining (pure configuration, no worker)."""

from __future__ import annotations

from celery import Celery

from drainctl.adapters.celery import unsafe_settings


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
