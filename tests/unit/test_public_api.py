"""The package's public surface."""

from __future__ import annotations

import drainctl
import drainctl.errors


def test_all_names_resolve():
    """Every name in __all__ is importable from the package."""
    for name in drainctl.__all__:
        assert getattr(drainctl, name) is not None


def test_every_error_is_public():
    """Every exception class of drainctl.errors is exported, so users can catch it."""
    errors = {
        name
        for name, value in vars(drainctl.errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert errors <= set(drainctl.__all__)
