"""The drainctl CLI against real listeners: output, --json, and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from drainctl.adapters.jobs import JobsAdapter
from drainctl.cli import main
from drainctl.cli_options import help_width
from drainctl.config import Settings
from tests.integration.conftest import StartListener
from tests.integration.test_listener import run_job_in_thread
from tests.processes import spawn_loop_worker, stop
from tests.redis_server import free_port


def drainctl(settings: Settings, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(
        main, ["--redis-url", settings.redis_url, "--app", str(settings.app), *args]
    )
    return result.exit_code, result.stdout, result.stderr


def test_status_table_and_json(settings: Settings, start_listener: StartListener):
    """status lists each live instance; --json gives the same as a list of objects."""
    start_listener("clock", dyno="clock.1", release="v3")
    start_listener("worker", dyno="worker.1", release="v3")
    code, out, _ = drainctl(settings, "status")
    assert code == 0
    assert "clock.1" in out
    assert "worker.1" in out
    assert "running" in out
    code, out, _ = drainctl(settings, "--json", "status")
    assert code == 0
    rows = json.loads(out)
    assert sorted(r["dyno"] for r in rows) == ["clock.1", "worker.1"]
    assert {r["release"] for r in rows} == {"v3"}
    assert all(r["stale"] is False and r["memory_mb"] > 0 for r in rows)


def test_ping_drain_resume_json(settings: Settings, start_listener: StartListener):
    """ping, drain and resume succeed with exit 0 and report each instance."""
    jobs = JobsAdapter()
    start_listener("worker", adapter=jobs)
    worker = run_job_in_thread(jobs, "job-1", 0.3)
    code, out, _ = drainctl(settings, "--json", "ping")
    assert code == 0
    ping = json.loads(out)
    assert ping["ok"]
    assert len(ping["replies"]) == 1
    assert len(ping["latency_ms"]) == 1
    code, out, _ = drainctl(settings, "--json", "drain", "--deadline", "5")
    assert code == 0
    drained = json.loads(out)["replies"][0]
    assert drained["state"] == "drained"
    assert drained["data"]["finished"] == ["job-1"]
    code, out, _ = drainctl(settings, "resume")
    assert code == 0
    assert "running" in out
    worker.join()


def test_failed_drain_exits_3(settings: Settings, start_listener: StartListener):
    """A drain that hits its deadline with work still running exits 3 and names the job."""
    jobs = JobsAdapter()
    start_listener("worker", adapter=jobs)
    worker = run_job_in_thread(jobs, "stuck-job", 1.5)
    code, out, err = drainctl(settings, "drain", "--deadline", "0.1")
    assert code == 3
    assert "stuck-job" in out
    assert "drain: 1 failed" in err
    worker.join()
    drainctl(settings, "resume")


def test_unanswered_ping_exits_3_naming_the_instance(settings: Settings):
    """An instance that died without cleaning up is reported by id and dyno, exit 3."""
    proc, instance_id = spawn_loop_worker(settings.redis_url, str(settings.app), DYNO="worker.4")
    stop(proc)
    code, out, err = drainctl(settings, "--json", "ping", "--timeout", "0.5")
    assert code == 3
    assert json.loads(out)["missing"][0]["instance_id"] == instance_id
    assert json.loads(out)["missing"][0]["dyno"] == "worker.4"
    assert "1 did not answer" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--app", "x", "--redis-url", "redis://:hunter2@127.0.0.1:{port}/0", "status"],
            6,
            "cannot reach Redis at redis://:***@127.0.0.1:{port}/0",
        ),
        (["--redis-url", "redis://127.0.0.1:{port}/0", "status"], 2, "no app given"),
        (["--app", "bad app", "status"], 2, "invalid app 'bad app'"),
        (["--app", "demo\n", "status"], 2, "invalid app 'demo\\n'"),
        (["--app", "demo\x1b[2J", "ping"], 2, "invalid app 'demo\\x1b[2J'"),
        (["--app", "x", "ping", "-t", "worker\n"], 2, "invalid process type 'worker\\n'"),
        (["--app", "x", "drain", "-t", "clock\r"], 2, "invalid process type 'clock\\r'"),
        (["--app", "x", "--redis-url", "http://nope", "status"], 2, "invalid Redis URL"),
        (["--app", "x", "drain", "--deadline", "soon"], 2, "is not a valid float"),
        (["--app", "x", "drain", "--deadline", "nan"], 2, "nan is not a finite, non-negative"),
        (["--app", "x", "ping", "--timeout", "inf"], 2, "inf is not a finite, non-negative"),
        (["--app", "x", "resume", "--timeout", "-1"], 2, "-1.0 is not a finite, non-negative"),
        (["--app", "x", "deploy", "--ack-timeout", "inf"], 2, "inf is not a finite"),
    ],
)
def test_errors_are_one_line_with_exit_codes(args: list[str], code: int, message: str):
    """Bad input and unreachable Redis give one clear line and their own exit code."""
    port = free_port()
    args = [a.format(port=port) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "drainctl", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == code
    assert message.format(port=port) in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_help_lists_exit_codes_and_imports_no_framework():
    """--help documents the exit codes and loads neither redis nor any job framework.

    Nor what start-up can do without (dataclasses, shutil, pathlib: ~5 ms of ~55).
    """
    probe = (
        "import sys\nfrom drainctl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('redis', 'apscheduler', 'rq', 'celery', 'rich', 'sh', 'logging', 'orjson',\n"
        "         'dataclasses', 'shutil', 'pathlib')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=30
    )
    assert "6  Redis unreachable" in result.stdout
    assert "HEAVY []" in result.stdout


@pytest.mark.parametrize("command", ["status", "ping"])
def test_status_and_ping_load_no_rich(
    settings: Settings, start_listener: StartListener, command: str
):
    """status and ping draw their tables as plain text: rich is ~40 ms of their start-up
    (docs/benchmarks.md); only `status --watch` on a terminal and the deploy display load it."""
    start_listener("worker", dyno="worker.1")
    probe = (
        "import sys\nfrom drainctl.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('RICH', [m for m in sys.modules if m.split('.')[0] == 'rich'], code)\n"
    )
    where = ["--redis-url", settings.redis_url, "--app", str(settings.app)]
    result = subprocess.run(
        [sys.executable, "-c", probe, *where, command],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "DRAINCTL_ALLOW_UNSIGNED": "1"},
    )
    assert "RICH [] 0" in result.stdout, result.stderr
    assert "worker.1" in result.stdout


def test_tables_are_plain_aligned_and_escaped():
    """Columns two spaces apart, padded to the widest cell (wide characters count two), no
    trailing blanks; a control character in a registry entry is shown escaped."""
    from drainctl.render import _build_table

    lines = _build_table(["a", "bb"], [["xyz", "1"], ["\u7d4c\u7406", "2\x1b[2J\n"]])
    assert lines == ["a     bb", "xyz   1", "\u7d4c\u7406  2\\x1b[2J\\n"]


@pytest.mark.parametrize(("columns", "width"), [("60", 58), ("200", 78), ("20", 50)])
def test_help_width_is_clicks(monkeypatch: pytest.MonkeyPatch, columns: str, width: int):
    """The terminal's width less 2, between 50 and 78, as click computes it with shutil."""
    monkeypatch.setenv("COLUMNS", columns)
    assert help_width() == width


def test_version():
    """--version prints the package version."""
    from drainctl.__about__ import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout
