"""RQ's own test suite, run twice: with ``rq.Worker``, then with ``DrainableWorker`` in its place.

Usage: ``scripts/rq_suite [PYTEST ARGS...]`` (e.g. ``tests/test_worker.py``). The tests come from
the sdist of the installed RQ version (``pip download --no-binary``, cached in
``.cache/rq-suite``); both runs use one private redis-server (RQ's tests expect ``localhost:6379``:
a ``conftest.py`` written beside them points ``redis.Redis()`` at the private port instead). Prints
one JSON object: each run's counts and every test whose outcome differs; exits 1 if any differs
beyond ``EXPECTED``, so the next RQ release is checked the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402

CACHE = ROOT / ".cache" / "rq-suite"

# Tolerated by design (README, RQ section): a second SIGTERM does not force a cold shutdown (RQ
# 3.0.0's test of it passed anyway in our last full run). Last full run, 803 tests with RQ's slow
# ones: only test_job_dependency's two execution-order tests differed; they sleep a fixed 0.75 s
# after starting two burst workers, which a DrainableWorker's listener start-up can exceed.
EXPECTED = frozenset(
    {"tests.test_worker.WorkerShutdownTestCase::test_working_worker_cold_shutdown"}
)

CONFTEST = '''
"""Written by drainctl's scripts/rq_suite.py: the private Redis, and optionally DrainableWorker."""
import functools
import os

import redis

_PORT = int(os.environ["RQ_SUITE_REDIS_PORT"])
_init = redis.Redis.__init__


@functools.wraps(_init)
def _private_port(self, *args, **kwargs):
    if len(args) < 2 and "port" not in kwargs:
        kwargs["port"] = _PORT
    _init(self, *args, **kwargs)


redis.Redis.__init__ = _private_port

if os.environ.get("RQ_SUITE_WORKER") == "drainctl":
    import rq
    import rq.worker

    from drainctl.adapters.rq import DrainableWorker

    rq.Worker = rq.worker.Worker = DrainableWorker
'''


def sdist(package: str, tests: str, cache: Path) -> Path:
    """The source release of the installed ``package`` (its ``tests`` directory inside),
    downloaded and unpacked into ``cache`` once."""
    release = version(package)
    unpacked = cache / f"{package}-{release}"
    if not (unpacked / tests).is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"{package}=={release}", "--no-binary",
             ":all:", "--no-deps", "--quiet", "-d", str(cache)],
            check=True,
        )  # fmt: skip
        with tarfile.open(cache / f"{package}-{release}.tar.gz") as archive:
            archive.extractall(cache, filter="data")
    return unpacked


def suite() -> Path:
    """RQ's tests for the installed version."""
    unpacked = sdist("rq", "tests", CACHE)
    (unpacked / "conftest.py").write_text(CONFTEST)
    return unpacked


def run(where: Path, worker: str, port: int, args: list[str]) -> dict[str, str]:
    """One pytest run; the outcome of every test by node id."""
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        env = {
            "RQ_SUITE_REDIS_PORT": str(port),
            "RQ_SUITE_WORKER": worker,
            "DRAINCTL_APP": "rq-suite",
            "DRAINCTL_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "DRAINCTL_ALLOW_UNSIGNED": "1",
            "RUN_SLOW_TESTS_TOO": "1",  # RQ's signal and shutdown tests are among the slow ones
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        }
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
             f"--junitxml={report.name}", *(args or ["tests"])],
            cwd=where, env=env, check=False, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return outcomes(ElementTree.parse(report.name))  # noqa: S314  # our own pytest's report


def outcomes(tree: ElementTree.ElementTree[ElementTree.Element]) -> dict[str, str]:
    """``classname::name`` -> passed, failed, error or skipped."""
    found = {}
    for case in tree.iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[f"{case.get('classname')}::{case.get('name')}"] = (kinds or ["passed"])[0]
    return found


def compare(
    framework: str, run_as: Callable[[str, int], dict[str, str]], expected: frozenset[str]
) -> int:
    """Run the suite as ``framework`` and as ``drainctl`` on one private Redis, print both
    results' counts and every test whose result differs; 1 if one differs unexpectedly."""
    server = RedisServer().start()
    try:
        plain = run_as(framework, server.port)
        drainable = run_as("drainctl", server.port)
    finally:
        server.cleanup()
    differ = {
        test: {framework: plain.get(test, "absent"), "drainctl": drainable.get(test, "absent")}
        for test in sorted(set(plain) | set(drainable))
        if plain.get(test) != drainable.get(test)
    }
    counts = {
        name: {kind: list(run.values()).count(kind) for kind in sorted(set(run.values()))}
        for name, run in ((framework, plain), ("drainctl", drainable))
    }
    summary = {f"{framework}_version": version(framework), "counts": counts, "differ": differ}
    print(json.dumps(summary, indent=1))
    return 1 if set(differ) - expected else 0


def main(args: list[str]) -> int:
    """Both runs, compared."""
    where = suite()
    return compare("rq", lambda worker, port: run(where, worker, port, args), EXPECTED)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
