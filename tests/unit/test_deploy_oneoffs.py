"""How a deploy's plan and verify treat one-off processes (``--one-offs wait|ignore``): pure."""

from __future__ import annotations

from typing import Any

from drainctl.deploy.oneoffs import OneOffs, detail, still_running, summary
from drainctl.deploy.plan import make_plan, target_types
from drainctl.deploy.verify import Observations, decide
from tests.unit.test_deploy_logic import SHA, record, spec


def oneoff(instance_id: str, process_type: str = "scheduler", **extra: Any) -> Any:
    """A ``drainctl run`` instance: its heartbeat carries the command and its run time."""
    return record(
        instance_id, process_type, command="python tasks.py --limit 500", run_s=12.0, **extra
    )


def test_one_offs_are_listed_apart_and_never_expected_back() -> None:
    """A one-off is not among the instances the new release must bring back, and its type is no
    target type when the live types are used (no Procfile)."""
    live = [record("w1", "worker"), oneoff("o1"), oneoff("o2", "run", release="v0")]
    assert target_types((), {}, live) == ("worker",)
    plan = make_plan(SHA, ("worker",), live)
    assert [r.instance_id for r in plan.instances] == ["w1"]
    assert [r.instance_id for r in plan.oneoffs] == ["o1", "o2"]
    assert plan.counts() == {"worker": 1}
    assert plan.missing_types == ()


def test_wait_drains_fences_and_awaits_them() -> None:
    """Under wait (the default) every one-off is drained and awaited; its type is drained and
    fenced, and its release fenced."""
    live = [record("w1", "worker"), oneoff("o1"), oneoff("o2", "run", release="v0")]
    plan = make_plan(SHA, ("worker",), live, one_offs=OneOffs.WAIT)
    assert [r.instance_id for r in plan.to_drain] == ["w1", "o1", "o2"]
    assert plan.ignored == ()
    assert plan.drain_types == ("worker", "run", "scheduler")
    assert plan.releases == ("v0", "v1")


def test_ignore_leaves_them_undrained_unfenced_and_uncounted() -> None:
    """Under ignore a one-off is neither drained nor awaited, its type not fenced, and a release
    only it runs is not fenced either."""
    live = [record("w1", "worker"), oneoff("o1"), oneoff("o2", "run", release="v0")]
    plan = make_plan(SHA, ("worker",), live, one_offs=OneOffs.IGNORE)
    assert [r.instance_id for r in plan.to_drain] == ["w1"]
    assert [r.instance_id for r in plan.ignored] == ["o1", "o2"]
    assert plan.drain_types == ("worker",)
    assert plan.releases == ("v1",)


def test_a_one_off_of_a_type_drained_anyway_is_drained_even_under_ignore() -> None:
    """Fences are per release and type: a one-off registered as ``worker`` (or an explicit
    ``-t scheduler``) is drained with its type whatever --one-offs says, and not counted."""
    live = [record("w1", "worker"), oneoff("o1", "worker"), oneoff("o2")]
    plan = make_plan(SHA, ("worker", "scheduler"), live, one_offs=OneOffs.IGNORE)
    assert [r.instance_id for r in plan.to_drain] == ["w1", "o1", "o2"]
    assert plan.counts() == {"worker": 1, "scheduler": 0}
    assert plan.missing_types == ()


def test_a_gone_one_off_is_set_aside_under_wait_and_dropped_under_ignore() -> None:
    """A one-off whose beat is stale is not waited for (counted gone) under wait; ignored, it is
    not listed."""
    live = [record("w1", "worker"), oneoff("o1", stale=True)]
    waited = make_plan(SHA, ("worker",), live)
    assert [r.instance_id for r in waited.stale] == ["o1"]
    assert waited.oneoffs == ()
    ignored = make_plan(SHA, ("worker",), live, one_offs=OneOffs.IGNORE)
    assert (ignored.stale, ignored.oneoffs) == ((), ())


def test_release_phase_lists_only_one_offs_of_older_releases() -> None:
    """With the release known (the release phase), a one-off of the new release is not listed."""
    live = [oneoff("o1", release="v1"), oneoff("o2", release="v2")]
    plan = make_plan(SHA, ("worker",), live, release="v2")
    assert [r.instance_id for r in plan.oneoffs] == ["o1"]


def test_json_detail_and_failure_hint() -> None:
    """``--json`` lists a one-off with its command, run time and handling; the plan's detail
    cell shows the command and run time; a failed drain names the one-offs still running."""
    one = oneoff("o1", dyno="scheduler.4321")
    assert summary(one, waited=False) == {
        "instance_id": "o1",
        "process_type": "scheduler",
        "dyno": "scheduler.4321",
        "release": "v1",
        "command": "python tasks.py --limit 500",
        "run_s": 12.1,
        "handling": "ignore",
    }
    assert detail(one) == "python tasks.py --limit 500 (12.1s)"
    hint = still_running([one, oneoff("o2")], {"o1", "w1"})
    assert hint.startswith("; one-off(s) not done in time: scheduler.4321 (o1) `python tasks.py")
    assert "--one-offs ignore" in hint
    assert still_running([one], {"w1"}) == ""


def test_verify_ignores_one_offs_of_any_release() -> None:
    """An old one-off still running (ignored) is no zombie, and a one-off of the new release is
    no evidence: the verdict rests on the other instances."""
    obs, check = Observations(), spec(required={"worker": 1})
    old_oneoff = oneoff("o1", "worker")
    new_oneoff = oneoff("o2", "worker", commit=SHA, release="v2")
    obs.update([old_oneoff, new_oneoff], check, now=0.0)
    assert (obs.old, obs.new) == ({}, {})
    obs.update([old_oneoff, new_oneoff, record("n1", commit=SHA, release="v2")], check, now=0.0)
    verdict = decide(obs, check, elapsed=10.0, now=10.0)
    assert verdict.ok
    assert verdict.zombies == []
