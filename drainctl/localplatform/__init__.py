"""A Heroku-like platform on one machine to rehearse deploys (not for production); the demo and the
end-to-end tests run on it too.

``python -m drainctl.localplatform create DIR --app NAME --redis-url URL`` makes ``DIR/repo.git``, a
bare repository to push to. Its post-receive hook turns each push to ``main`` (or ``master``) into
release ``vN`` checked out from the pushed commit; ``python -m drainctl.localplatform run DIR``
supervises the processes of the app's ``Procfile`` as Heroku does on a deploy: SIGTERM to every
process of the old release, the new release started at once (they overlap), SIGKILL after the grace
period, and a process that exits restarted with backoff. Each process gets ``DYNO=type.N``,
``HEROKU_RELEASE_VERSION``, ``HEROKU_SLUG_COMMIT``, ``HEROKU_APP_NAME``, ``REDIS_URL``, ``PORT`` and
the app's config vars, never the ``DRAINCTL_*`` settings of the shell that started the platform.
``python -m drainctl.localplatform ps DIR`` lists the processes: dyno, release, pid, state.

Faults for tests (``python -m drainctl.localplatform fault DIR ...``), applied to the next push
only: ``--zombie TYPE`` leaves one old process of TYPE running, ``--crash TYPE`` makes TYPE crash
at boot in the new release (after registering, with its error in its heartbeat), ``--reject``
makes the remote refuse the push.
"""
