"""Pure logic of a deploy: the plan, the verify decisions, the hook's stdin."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import click
import pytest

from drainctl.deploy.commands import _counts, _phases
from drainctl.deploy.githook import (
    ZERO_SHA,
    VerifyArgs,
    deployed,
    parse_updates,
    pre_commit_lines,
)
from drainctl.deploy.gitrepo import remote_ref
from drainctl.deploy.plan import gone_reason, make_plan, read_procfile, target_types
from drainctl.deploy.push import last_segment
from drainctl.deploy.verify import NewRelease, Observations, VerifySpec, decide
from drainctl.registry import InstanceRecord

SHA = "a" * 40
OLD_SHA = "b" * 40


def record(
    instance_id: str,
    process_type: str = "worker",
    release: str = "v1",
    commit: str = OLD_SHA,
    stale: bool = False,
    **extra: Any,
) -> InstanceRecord:
    doc = {
        "instance_id": instance_id,
        "process_type": process_type,
        "dyno": extra.pop("dyno", f"{process_type}.1"),
        "release": release,
        "commit": commit,
        "heartbeat_interval": 1.0,
        "host": "h",
        "pid": 42,
        "state": "running",
        **extra,
    }
    return InstanceRecord(doc=doc, age=3.0 if stale else 0.1)


# -- plan ---------------------------------------------------------------------------------------


def test_procfile_types_exclude_web_and_release(tmp_path: Any) -> None:
    """By default a deploy drains every Procfile type but web and release, in Procfile order."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: gunicorn app\n# a comment\nrelease: migrate\nclock: c\nworker: w\n")
    assert target_types((), read_procfile(procfile), []) == ("clock", "worker")


def test_without_procfile_every_live_type_is_drained() -> None:
    """No Procfile: the live non-web types, sorted; chosen types always win."""
    live = [record("1", "worker"), record("2", "web"), record("3", "clock")]
    assert target_types((), {}, live) == ("clock", "worker")
    assert target_types(("worker", "worker"), {"clock": "c"}, live) == ("worker",)


def test_plan_counts_missing_types_and_fenceable_releases() -> None:
    """The plan lists targeted instances, types with none, and releases other than unknown."""
    live = [record("1", "worker"), record("2", "worker", release="unknown"), record("3", "web")]
    plan = make_plan(SHA, ("clock", "worker"), live)
    assert plan.counts() == {"clock": 0, "worker": 2}
    assert plan.missing_types == ("clock",)
    assert plan.releases == ("v1",)


def test_plan_sets_aside_instances_known_gone() -> None:
    """A stale beat, or a pid gone on this host, is not drained or counted, but still fenced."""
    dead = _exited_pid()
    live = [
        record("1"),
        record("2", stale=True, release="v0"),
        record("3", host=socket.gethostname(), pid=dead),
    ]
    plan = make_plan(SHA, ("worker",), live)
    assert [r.instance_id for r in plan.instances] == ["1"]
    assert [r.instance_id for r in plan.stale] == ["2", "3"]
    assert plan.counts() == {"worker": 1}
    assert plan.releases == ("v0", "v1")
    assert gone_reason(plan.stale[0]) == "last beat 3s ago"
    assert gone_reason(plan.stale[1]) == f"process {dead} gone"
    assert gone_reason(record("4", host=socket.gethostname(), pid=os.getpid())) is None


def _exited_pid() -> int:
    """The pid of a child that has exited and been reaped (not reused this quickly)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- verify -------------------------------------------------------------------------------------


def spec(**changes: Any) -> VerifySpec:
    base: dict[str, Any] = {
        "new": NewRelease(commit=SHA[:7], old_releases=frozenset({"v1"})),
        "required": {"worker": 1},
        "stable_for": 2.0,
        "zombie_grace": 5.0,
        "timeout": 20.0,
    }
    return VerifySpec(**base | changes)


def test_new_release_matches_full_or_abbreviated_commit_or_a_new_release_value() -> None:
    """An abbreviated sha matches a full one either way; a release outside the old ones is new."""
    new = NewRelease(commit=SHA[:7], old_releases=frozenset({"v1"}))
    assert new.matches({"commit": SHA, "release": "v1"})
    assert new.matches({"commit": None, "release": "v2"})
    assert not new.matches({"commit": OLD_SHA, "release": "v1"})
    assert not new.matches({"commit": None, "release": "unknown"})
    assert NewRelease(commit=SHA).matches({"commit": SHA[:12]})
    assert not NewRelease(release="v3").matches({"release": "v2", "commit": SHA})


def test_success_needs_stability_for_the_whole_window() -> None:
    """A new instance counts only after stable_for seconds; then the verdict is success."""
    obs, s = Observations(), spec()
    obs.update([record("n1", release="v2", commit=SHA)], s, now=0.0)
    assert not decide(obs, s, elapsed=1.0, now=1.0).done
    verdict = decide(obs, s, elapsed=2.0, now=2.0)
    assert verdict.done
    assert verdict.ok
    assert verdict.stable == {"worker": 1}


def test_zombie_is_tolerated_within_the_grace_then_fails_named() -> None:
    """An old instance still beating: wait during zombie_grace, then fail naming it."""
    obs, s = Observations(), spec()
    live = [record("n1", release="v2", commit=SHA), record("o1", dyno="worker.1")]
    obs.update(live, s, now=0.0)
    assert not decide(obs, s, elapsed=4.0, now=4.0).done
    verdict = decide(obs, s, elapsed=5.0, now=5.0)
    assert verdict.done
    assert not verdict.ok
    assert verdict.zombies == [
        {
            "dyno": "worker.1",
            "instance_id": "o1",
            "process_type": "worker",
            "release": "v1",
            "host": "h",
            "pid": 42,
        }
    ]
    assert "zombie worker.1 (o1) of release v1 on h pid 42" in verdict.message()


def test_old_instance_that_exits_or_goes_stale_is_no_zombie() -> None:
    """Old instances that vanished or stopped beating do not fail the deploy."""
    obs, s = Observations(), spec()
    obs.update([record("n1", release="v2", commit=SHA), record("o1"), record("o2")], s, now=0.0)
    obs.update([record("n1", release="v2", commit=SHA), record("o2", stale=True)], s, now=3.0)
    assert decide(obs, s, elapsed=3.0, now=3.0).ok


def test_crash_loop_is_reported_with_its_last_error() -> None:
    """More than two restarts of a new dyno fail at once, with the last error it reported."""
    obs, s = Observations(), spec()
    error = {"job": "boot", "type": "RuntimeError", "message": "bad config"}
    for i in range(4):
        obs.update([record(f"n{i}", release="v2", commit=SHA, last_error=error)], s, now=i)
    verdict = decide(obs, s, elapsed=3.0, now=3.0)
    assert verdict.done
    assert not verdict.ok
    assert verdict.crash_loops == [
        {
            "process_type": "worker",
            "dyno": "worker.1",
            "restarts": 3,
            "last_error": "RuntimeError: bad config",
        }
    ]


def test_two_restarts_are_not_yet_a_crash_loop() -> None:
    """Up to two restarts are tolerated: a flaky boot is not a crash loop."""
    obs, s = Observations(), spec()
    for i in range(3):
        obs.update([record(f"n{i}", release="v2", commit=SHA)], s, now=float(i))
    assert decide(obs, s, elapsed=2.5, now=2.5).crash_loops == []


def test_old_instances_never_count_as_new_whatever_commit_they_report() -> None:
    """A redeploy of the live commit: the drained instances report it, yet are not the new
    release; only an instance id outside the drained set is."""
    new = NewRelease(commit=SHA, old_releases=frozenset({"v1"}), old_instances=frozenset({"o1"}))
    assert not new.matches({"instance_id": "o1", "commit": SHA, "release": "v2"})
    assert new.matches({"instance_id": "n1", "commit": SHA, "release": "v1"})


def test_a_drained_new_instance_is_not_up() -> None:
    """A new instance held drained (a fence on the new release) never counts as stable."""
    obs, s = Observations(), spec()
    obs.update([record("n1", release="v2", commit=SHA, state="drained")], s, now=0.0)
    assert not decide(obs, s, elapsed=5.0, now=5.0).ok
    obs.update([record("n1", release="v2", commit=SHA)], s, now=6.0)
    assert decide(obs, s, elapsed=6.0, now=6.0).ok


def test_four_workers_without_dyno_are_no_crash_loop() -> None:
    """Without DYNO a lineage is the process type: N new instances are N, not N-1 restarts."""
    obs, s = Observations(), spec(required={"worker": 4})
    live = [record(f"n{i}", release="v2", commit=SHA, dyno=None) for i in range(4)]
    obs.update(live, s, now=0.0)
    verdict = decide(obs, s, elapsed=2.0, now=2.0)
    assert verdict.crash_loops == []
    assert verdict.ok
    for i in range(4, 7):  # three more starts beyond the four expected: a crash loop
        obs.update([*live, record(f"n{i}", release="v2", commit=SHA, dyno=None)], s, now=3.0)
    assert decide(obs, s, elapsed=3.0, now=3.0).crash_loops[0]["restarts"] == 3


def test_zombie_without_dyno_is_named_by_type() -> None:
    """No DYNO: a zombie is named by its process type, instance id, host and pid."""
    obs, s = Observations(), spec()
    obs.update([record("n1", release="v2", commit=SHA), record("o1", dyno=None)], s, now=0.0)
    verdict = decide(obs, s, elapsed=5.0, now=5.0)
    assert "zombie worker (o1) of release v1 on h pid 42" in verdict.message()
    assert "None" not in verdict.message()


def test_timeout_names_the_missing_instances() -> None:
    """Nothing new came up: at the timeout the verdict fails with have/need per type."""
    obs, s = Observations(), spec()
    obs.update([], s, now=0.0)
    assert not decide(obs, s, elapsed=19.0, now=19.0).done
    verdict = decide(obs, s, elapsed=20.0, now=20.0)
    assert verdict.done
    assert not verdict.ok
    assert verdict.message() == "worker: 0/1 stable on the new release"


# -- the hook's stdin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"refs/heads/main {SHA} refs/heads/main {OLD_SHA}", True),
        (f"refs/heads/main {SHA} refs/heads/main {ZERO_SHA}", True),  # a new branch
        (f"(delete) {ZERO_SHA} refs/heads/old {OLD_SHA}", False),  # a deletion
        (f"refs/heads/main {SHA} refs/heads/main {SHA}", False),  # nothing to send
        ("garbage", False),
        ("", False),
    ],
)
def test_parse_updates_drops_deletions_and_up_to_date_refs(line: str, kept: bool) -> None:
    """Only lines that send commits count."""
    assert bool(parse_updates([line])) is kept


def test_deployed_prefers_main_or_master() -> None:
    """Of several refs pushed at once, the one to main (or master) is the deploy."""
    lines = [
        f"refs/heads/x {OLD_SHA} refs/heads/feature {ZERO_SHA}",
        f"HEAD {SHA} refs/heads/master {OLD_SHA}",
    ]
    update = deployed(parse_updates(lines))
    assert update is not None
    assert update.local_sha == SHA
    assert deployed([]) is None


def test_pre_commit_variables_become_a_stdin_line() -> None:
    """Under the pre-commit framework (no stdin), its variables describe the push."""
    env = {"PRE_COMMIT_TO_REF": SHA, "PRE_COMMIT_FROM_REF": OLD_SHA}
    (update,) = parse_updates(pre_commit_lines(env))
    assert (update.local_sha, update.remote_ref, update.remote_sha) == (
        SHA,
        "refs/heads/main",
        OLD_SHA,
    )
    assert pre_commit_lines({}) == []


def test_push_output_keeps_what_a_terminal_would_show() -> None:
    """Progress redrawn with carriage returns and erase codes collapses to its last state."""
    assert last_segment("Counting: 50%\rCounting: 100%, done.\n") == "Counting: 100%, done."
    assert last_segment("remote: v2 is up\x1b[K\n") == "remote: v2 is up"


def test_the_hook_hands_its_counts_and_drained_set_to_the_background_verify() -> None:
    """What the hook saw before git pushed reaches the verify as arguments, not re-read later."""
    args = VerifyArgs(
        timeout=120.0, stable_for=10.0, deploy_id="d1", drained=["a", "b"], expect={"worker": 2},
        from_releases=("v1",), phases_s={"plan": 0.25, "drain": 1.5},
    ).argv()  # fmt: skip
    assert args == [
        "--verify-timeout", "120.0", "--stable-for", "10.0", "--deploy-id", "d1",
        "--drained", "a", "--drained", "b", "--expect", "worker=2", "--process-type", "worker",
        "--from-release", "v1", "--phase", "plan=0.25", "--phase", "drain=1.5",
    ]  # fmt: skip
    assert _phases(("plan=0.25", "drain=1.5")) == {"plan": 0.25, "drain": 1.5}
    assert _counts(("worker=2",)) == {"worker": 2}
    for parse, bad in ((_phases, "drain=abc"), (_phases, "=1"), (_counts, "worker=-1")):
        with pytest.raises(click.BadParameter):
            parse((bad,))


@pytest.mark.parametrize(
    ("ref", "remote"),
    [
        ("HEAD:main", "refs/heads/main"),
        ("+abc:refs/heads/x", "refs/heads/x"),
        ("main", "refs/heads/main"),
    ],
)
def test_remote_ref_of_a_push_ref(ref: str, remote: str) -> None:
    """The ref git ls-remote is asked about is the push ref's remote side."""
    assert remote_ref(ref) == remote
