"""``benchmarks.run``: a run of some suites keeps the other suites' rows in the results file."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``benchmarks.run`` with two fake suites whose rows say how often they ran."""
    monkeypatch.syspath_prepend(str(ROOT))
    module = _load("benchmarks.run", ROOT / "benchmarks" / "run.py")
    calls = {"toy": 0, "sae": 0}

    def fake(suite: str) -> types.ModuleType:
        def run_suite(quick: bool = False) -> list[dict[str, object]]:
            calls[suite] += 1
            return [
                {"name": f"{suite} row", "value": calls[suite], "unit": "x", "bar": "", "met": True}
            ]

        return types.SimpleNamespace(run=run_suite)  # type: ignore[return-value]

    for suite in calls:
        monkeypatch.setitem(sys.modules, f"benchmarks.bench_{suite}", fake(suite))
    monkeypatch.setattr(module, "_plot", lambda rows, path: None)
    return module


def test_only_replaces_its_own_suites(run: types.ModuleType, tmp_path: Path) -> None:
    assert run.main(["--only", "toy", "sae", "--out", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "latest.json").read_text())
    assert [(r["suite"], r["value"]) for r in first["rows"]] == [("toy", 1), ("sae", 1)]

    assert run.main(["--only", "sae", "--out", str(tmp_path)]) == 0
    second = json.loads((tmp_path / "latest.json").read_text())
    assert sorted((r["suite"], r["value"]) for r in second["rows"]) == [("sae", 2), ("toy", 1)]
    # The kept suite keeps the date of the run that measured it.
    assert second["suites"]["toy"] == first["suites"]["toy"]
    assert set(second["suites"]) == {"toy", "sae"}


def test_a_file_without_suites_is_replaced_whole(run: types.ModuleType, tmp_path: Path) -> None:
    old = {"date": "2026-01-01", "rows": [{"name": "old", "value": 1.0, "unit": "x"}]}
    (tmp_path / "latest.json").write_text(json.dumps(old))
    assert run.main(["--only", "sae", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "latest.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["sae row"]


def test_table_names_each_suites_run(tmp_path: Path) -> None:
    table = _load("benchmark_table", ROOT / "docs" / "benchmark_table.py")
    results = tmp_path / "latest.json"
    suites = {
        "toy": {"date": "2026-01-01T00:00:00", "seconds": 72.5, "machine": {"cores": 2}},
        "sae": {"date": "2026-01-02T00:00:00", "seconds": 90.0, "machine": {"cores": 2}},
    }
    rows = [{"name": "r", "value": 2.0, "unit": "x", "bar": ">= 1x", "met": True, "suite": "toy"}]
    results.write_text(json.dumps({"quick": False, "suites": suites, "rows": rows}))
    text = table.render(results)
    assert "toy on 2026-01-01T00:00:00 (72.5 s); sae on 2026-01-02T00:00:00 (90.0 s)" in text
    assert "(machine: cores 2)" in text
    assert "| r | 2 | x | >= 1x | yes |" in text


def test_the_gpu_benchmark_returns_no_rows_without_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import bench_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.run(quick=True) == []
    assert "no CUDA GPU" in capsys.readouterr().err
