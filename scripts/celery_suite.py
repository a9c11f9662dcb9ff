"""Celery's own worker tests, run twice: with plain Celery apps, then with drainctl's adapter
installed in every app the tests create, as a user installs it (``install(app)``).

Usage: ``scripts/celery_suite [PYTEST ARGS...]`` (default: ``DEFAULT_TESTS``, the worker, its
consumer and state, and the ``celery worker`` program: where warm and cold shutdown,
``WorkerShutdown`` and ``state.should_stop`` are tested). The tests come from the sdist of the
installed Celery version (``pip download --no-binary``, cached in ``.cache/celery-suite``; its
``celery/`` package is removed so that the installed Celery is the one tested), with the two
test plugins the chosen tests need beside them (``pip install --target``, never into .venv).
Celery's unit tests use the in-memory broker; drainctl's listeners use one private
redis-server. Prints one JSON object: each run's counts and every test whose outcome differs;
exits 1 if any differs beyond ``EXPECTED``, so the next Celery release is checked the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

from rq_suite import compare, outcomes, sdist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


CACHE = ROOT / ".cache" / "celery-suite"
DEFAULT_TESTS = ["t/unit/worker", "t/unit/apps/test_worker.py", "t/unit/bin/test_worker.py"]
# What the chosen tests import beyond Celery, pytest and what .venv has.
TEST_PLUGINS = ["freezegun", "pytest-click"]

# Tolerated by design: none yet.
EXPECTED: frozenset[str] = frozenset()

CONFTEST = '''
"""Written by drainctl's scripts/celery_suite.py: optionally, drainctl's adapter in every app.

Many of Celery's tests start a consumer and never shut it down; a worker process would end and
take drainctl's listener threads with it. So each test's listeners are stopped (and its SIGTERM
handler put back) as the test ends, before Celery's own check that no thread lingers.
"""
import os
import signal

import pytest

if os.environ.get("CELERY_SUITE_WORKER") == "drainctl":
    import celery.contrib.testing.app

    from drainctl.adapters.celery import install
    from drainctl.listener import ControlListener

    _TestApp = celery.contrib.testing.app.TestApp
    _start = ControlListener.start
    _started = []

    def _drainable(*args, **kwargs):
        app = _TestApp(*args, **kwargs)
        install(app)  # as a user does where the app is defined
        return app

    def _recorded_start(self):
        _started.append(self)
        return _start(self)

    celery.contrib.testing.app.TestApp = _drainable
    ControlListener.start = _recorded_start

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(item):
        item.sigterm_before = signal.getsignal(signal.SIGTERM)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(item, nextitem):
        while _started:
            _started.pop().stop()
        signal.signal(signal.SIGTERM, getattr(item, "sigterm_before", signal.SIG_DFL))
'''


def suite() -> Path:
    """Celery's tests for the installed version."""
    unpacked = sdist("celery", "t", CACHE)
    # The tests must import the installed Celery, not the sdist's copy beside them.
    shutil.rmtree(unpacked / "celery", ignore_errors=True)
    (unpacked / "conftest.py").write_text(CONFTEST)
    return unpacked


def plugins() -> Path:
    """The test plugins, in a directory of their own on PYTHONPATH."""
    target = CACHE / "plugins"
    if not target.is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(target), *TEST_PLUGINS],
            check=True,
        )  # fmt: skip
    return target


def run(where: Path, worker: str, port: int, args: list[str]) -> dict[str, str]:
    """One pytest run; the outcome of every test by node id."""
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        env = {
            "CELERY_SUITE_WORKER": worker,
            "DRAINCTL_APP": "celery-suite",
            "DRAINCTL_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "DRAINCTL_ALLOW_UNSIGNED": "1",
            "C_FORCE_ROOT": "1",  # as root (a container), Celery refuses pickle without it
            "PYTHONPATH": str(plugins()),
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        }
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--junitxml={report.name}", *(args or DEFAULT_TESTS)],
            cwd=where, env=env, check=False, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return outcomes(ElementTree.parse(report.name))  # noqa: S314  # our own pytest's report


def main(args: list[str]) -> int:
    """Both runs, compared."""
    where = suite()
    return compare("celery", lambda worker, port: run(where, worker, port, args), EXPECTED)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
