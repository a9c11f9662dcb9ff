"""The scheduler-agnostic clock core every clock adapter (APScheduler, Celery beat) runs on.

``core`` (ClockCore: lease standing, claims, drain, SIGTERM) over ``lease`` and
``lease_scripts`` (one clock per app, fencing tokens, once-keys), ``keeper`` (the lease thread),
``schedule_store`` (last-fired and next run times in Redis) and ``deploy_grace``.
"""
