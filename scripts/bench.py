"""Run the benchmarks in scripts/benchmarks/ and print one JSON object on stdout.

Usage: ``scripts/bench [--quick] [--markdown FILE] [NAME...]`` (``scripts/bench`` sets up .venv
and calls this); ``--markdown docs/benchmarks.md`` also rewrites that file's generated table.
Every ``scripts/benchmarks/NAME.py`` whose name does not start with ``_`` is a benchmark: it
exposes ``run() -> dict`` of JSON-able figures. Each runs in its own child process (a crash or a
leaked thread cannot spoil the next one) with its ``run()`` output captured as JSON; anything it
prints goes to stderr with the progress lines. A benchmark that fails is reported as an error in
the JSON and makes the exit status 1; a missed target never does: these are measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE / "benchmarks"
QUICK_ENV = "DRAINCTL_BENCH_QUICK"
MODULE_TIMEOUT_S = 900


def discover(directory: Path | None = None) -> dict[str, Path]:
    """Benchmark modules by name, in name order; ``_``-prefixed files are helpers."""
    paths = sorted((directory or BENCHMARKS).glob("*.py"))
    return {path.stem: path for path in paths if not path.name.startswith("_")}


def run_module(path: Path, quick: bool) -> dict[str, Any]:
    """Run one module's ``run()`` in a child process; its figures, or an ``error`` entry."""
    env = {**os.environ, QUICK_ENV: "1" if quick else "0"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=MODULE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {MODULE_TIMEOUT_S} s"}
    elapsed = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        return {"error": f"exited with status {done.returncode} (see stderr)", "took_s": elapsed}
    try:
        figures = json.loads(done.stdout)
    except ValueError:
        return {"error": "did not return JSON", "took_s": elapsed}
    return {**figures, "took_s": elapsed} if isinstance(figures, dict) else {"value": figures}


def child(path: Path) -> None:
    """In the child: import the module from its file, call ``run()``, print its JSON."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Whatever the benchmark (or a process it starts) prints is progress: keep stdout for the
    # JSON alone, at the file-descriptor level so child processes follow.
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            spec.loader.exec_module(module)
            figures = module.run()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
    print(json.dumps(figures))


def checks(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A benchmark's targets: its ``targets`` dict, or a bare ``meets_target`` flag."""
    found = dict(figures.get("targets", {}))
    if "meets_target" in figures:
        found["meets_target"] = {"met": figures["meets_target"]}
    return found


def targets(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Every target of every benchmark, as ``name.target -> met``."""
    return {
        f"{name}.{target}": bool(check.get("met"))
        for name, figures in results.items()
        for target, check in checks(figures).items()
    }


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# Bookkeeping, not figures: left out of the Markdown table.
UNLISTED = {"targets", "meets_target", "took_s", "n", "min_ms", "max_ms"}
UNITS = {"value_ms": "{} ms", "ratio": "{}x", "value": "{}"}


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: command, date, machine, targets, then every figure."""
    box = report["machine"]
    lines = [
        f"Command: `{report['command']}` · date: {report['date']}",
        "",
        f"Machine: {box['cores']} cores ({box['cpu']}), {box['os']}, Python {box['python']}, "
        f"Redis {box['redis_server']}, redis-py {box['redis_py']}, Celery {box['celery']}; "
        f"load average at start {box['load_average_at_start']}.",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    for name, figures in report["benchmarks"].items():
        for target, check in checks(figures).items():
            value = " ".join(UNITS[k].format(v) for k, v in check.items() if k in UNITS)
            lines.append(f"| {name}: {target} | {value} | {'yes' if check.get('met') else 'NO'} |")
    lines += ["", "| benchmark | figure | value |", "| --- | --- | --- |"]
    for name, figures in report["benchmarks"].items():
        lines += [f"| {name} | {' / '.join(path)} | {text} |" for path, text in _rows([], figures)]
    return "\n".join(lines) + "\n"


def _rows(path: list[str], value: Any) -> Iterator[tuple[list[str], str]]:
    if isinstance(value, dict):
        if {"p50_ms", "p99_ms", "n"} <= value.keys():
            yield path, f"p50 {value['p50_ms']} ms, p99 {value['p99_ms']} ms (n={value['n']})"
        elif {"median_ms", "n"} <= value.keys():
            yield path, f"median {value['median_ms']} ms (n={value['n']})"
        else:
            for key, inner in value.items():
                if key not in UNLISTED:
                    yield from _rows([*path, key], inner)
    elif value is not None and not isinstance(value, list):
        yield path, str(value)


def write_markdown(report: dict[str, Any], target: Path) -> None:
    """Replace the generated part of ``target`` (between the markers), keeping the prose."""
    text = target.read_text() if target.exists() else ""
    block = f"{BEGIN}\n{markdown(report)}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = f"{text}\n{block}\n"
    target.write_text(text)


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis_server": _redis_version(),
        "redis_py": _version("redis"),
        "celery": _version("celery"),
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _redis_version() -> str | None:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return None
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("v=")), out.strip())


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Parse, run the chosen benchmarks in order, print the report; 1 if any failed."""
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, ~2-4 min")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also update FILE's table")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (all)")
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return 0
    available = discover()
    unknown = [name for name in args.names if name not in available]
    if unknown:
        print(
            f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    chosen = args.names or list(available)
    report: dict[str, Any] = {
        "command": " ".join(["scripts/bench", *(["--quick"] if args.quick else []), *args.names]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
    }
    results = {}
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        results[name] = run_module(available[name], args.quick)
    report["benchmarks"] = results
    report["targets"] = targets(results)
    print(json.dumps(report, indent=2))
    if args.markdown is not None:
        write_markdown(report, args.markdown)
    return 1 if any("error" in figures for figures in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
