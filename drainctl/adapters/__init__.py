"""Adapters connect a ControlListener to the host's own way of running work.

``base`` defines the protocol every adapter implements; ``jobs`` is the generic adapter for
hand-written loops. Framework adapters live in their own modules and are imported only when used.
"""
