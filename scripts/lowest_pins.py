"""Print ``name==lower-bound`` for every dependency of drainctl and of its rq and celery extras.

``scripts/lowest`` installs these as constraints, so the tests run against the oldest versions
``pyproject.toml`` claims to support. A dependency without a lower bound is an error: every one
must state what was tested.
"""

from __future__ import annotations

import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

EXTRAS = ("rq", "celery")


def lower_bound(requirement: Requirement) -> str:
    """The version of the ``>=`` specifier."""
    for spec in requirement.specifier:
        if spec.operator == ">=":
            return spec.version
    raise SystemExit(f"{requirement}: no lower bound (>=) in pyproject.toml")


def wanted(requirement: Requirement) -> bool:
    """A runtime dependency, or one of the extras the lowest run installs."""
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in EXTRAS)


def main() -> None:
    """One pin per line on stdout (read from the installed project's metadata, which
    scripts/_setup.sh refreshes whenever pyproject.toml changes)."""
    for line in requires("drainctl") or []:
        requirement = Requirement(line)
        if wanted(requirement):
            sys.stdout.write(f"{requirement.name}=={lower_bound(requirement)}\n")


if __name__ == "__main__":
    main()
