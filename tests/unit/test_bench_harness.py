"""scripts/bench.py: discovery of benchmark modules, running them apart, and the report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    """scripts/ is not a package: load bench.py from its file."""
    spec = importlib.util.spec_from_file_location("bench_harness", ROOT / "scripts" / "bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench() -> ModuleType:
    return load_bench()


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    (tmp_path / "_helper.py").write_text("FACTOR = 2\n")
    (tmp_path / "fast.py").write_text(
        "import os, subprocess\nfrom _helper import FACTOR\n"
        "def run():\n"
        "    print('progress on stdout must not spoil the JSON')\n"
        "    subprocess.run(['echo', 'nor what a child process prints'], check=True)\n"
        "    quick = os.environ['DRAINCTL_BENCH_QUICK'] == '1'\n"
        "    return {'p50_ms': 0.5 * FACTOR, 'quick': quick,\n"
        "            'targets': {'under_1ms': {'value_ms': 0.5, 'met': True}}}\n"
    )
    (tmp_path / "broken.py").write_text("def run():\n    raise RuntimeError('boom')\n")
    return tmp_path


def test_discovery_skips_helpers_and_sorts(bench: ModuleType, modules: Path):
    """Every module not starting with '_' is a benchmark, in name order."""
    assert list(bench.discover(modules)) == ["broken", "fast"]


def test_module_runs_apart_and_returns_its_figures(bench: ModuleType, modules: Path):
    """run() is called in a child process, with the quick flag passed through the environment."""
    figures = bench.run_module(modules / "fast.py", quick=True)
    assert figures["p50_ms"] == 1.0
    assert figures["quick"] is True
    assert figures["took_s"] >= 0


def test_failing_module_is_an_error_entry(bench: ModuleType, modules: Path):
    """A benchmark that raises becomes an 'error' entry instead of stopping the others."""
    figures = bench.run_module(modules / "broken.py", quick=True)
    assert "status 1" in figures["error"]


def test_targets_are_collected_by_benchmark(bench: ModuleType):
    """The report lists every target (a targets dict or a meets_target flag) as name.target."""
    results = {
        "a": {"targets": {"x": {"met": True}, "y": {"met": False}}},
        "b": {"p50_ms": 1},
        "c": {"meets_target": True},
    }
    assert bench.targets(results) == {"a.x": True, "a.y": False, "c.meets_target": True}


def test_unknown_benchmark_is_a_usage_error(bench: ModuleType, capsys: pytest.CaptureFixture[str]):
    """Naming a benchmark that does not exist exits 2 with the list of real ones."""
    assert bench.main(["no-such-benchmark"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark no-such-benchmark" in err
    assert "roundtrip" in err


def test_report_is_one_json_object(
    bench: ModuleType,
    modules: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    """main() prints one JSON object with machine, figures and targets; 1 when one failed."""
    monkeypatch.setattr(bench, "BENCHMARKS", modules)
    assert bench.main(["--quick"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["command"] == "scripts/bench --quick"
    assert report["machine"]["cores"] >= 1
    assert report["benchmarks"]["fast"]["p50_ms"] == 1.0
    assert "error" in report["benchmarks"]["broken"]
    assert report["targets"] == {"fast.under_1ms": True}


def test_markdown_table_replaces_only_the_generated_part(
    bench: ModuleType, modules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """--markdown rewrites the table between the markers and keeps the prose around it."""
    monkeypatch.setattr(bench, "BENCHMARKS", modules)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Prose\n\n{bench.BEGIN}\nold table\n{bench.END}\n\nMore prose.\n")
    bench.main(["--quick", "--markdown", str(doc), "fast"])
    text = doc.read_text()
    assert text.startswith("# Prose\n")
    assert text.endswith("More prose.\n")
    assert "old table" not in text
    assert "| fast: under_1ms | 0.5 ms | yes |" in text
    assert "| fast | p50_ms | 1.0 |" in text
    assert "Command: `scripts/bench --quick fast`" in text
