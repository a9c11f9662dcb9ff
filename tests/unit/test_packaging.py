"""What the installed distribution declares: bounds scripts/lowest can test, types, licence."""

from __future__ import annotations

from importlib.metadata import metadata, requires
from pathlib import Path

from packaging.requirements import Requirement

import drainctl


def _shipped_requirements() -> list[Requirement]:
    """Runtime dependencies and those of the rq and celery extras (not the dev tools)."""
    parsed = [Requirement(line) for line in requires("drainctl") or []]
    return [
        r
        for r in parsed
        if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("rq", "celery"))
    ]


def test_every_dependency_and_extra_states_a_lower_bound() -> None:
    """Each runtime and extra requirement has a ``>=`` bound, the version scripts/lowest pins."""
    unbounded = [
        str(r) for r in _shipped_requirements() if not any(s.operator == ">=" for s in r.specifier)
    ]
    assert _shipped_requirements()
    assert unbounded == []


def test_the_rq_extra_needs_rq_2_6() -> None:
    """The RQ adapter uses what rq 2.6 added: the extra must not promise older releases."""
    (rq,) = [r for r in _shipped_requirements() if r.name == "rq"]
    assert not rq.specifier.contains("2.5.99")
    assert rq.specifier.contains("2.6.0")


def test_extras_are_rq_celery_and_dev_only() -> None:
    """One extra per framework (no duplicate such as a ``bench`` alias of celery)."""
    assert sorted(metadata("drainctl").get_all("Provides-Extra") or []) == ["celery", "dev", "rq"]


def test_distribution_is_typed_and_mit_licensed() -> None:
    """``py.typed`` ships in the package; the licence is MIT, with its LICENSE file."""
    meta = metadata("drainctl")
    assert (Path(drainctl.__file__).parent / "py.typed").is_file()
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
