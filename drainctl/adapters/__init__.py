"""Adapters connect a ControlListener to the host's own way of running work.

``base`` defines the protocol every adapter implements (and ``WorkerOptions``); ``jobs`` is the
generic adapter for hand-written loops, with ``reliable_queue`` for their Redis queue, ``unblock``
for blocking pops a drain can interrupt and ``recycle`` for max-jobs/max-memory limits. The
framework adapters, ``rq`` and ``celery``, are imported only when used.
"""
