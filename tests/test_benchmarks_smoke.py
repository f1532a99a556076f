"""Cheap checks of the benchmark scripts (benchmarks/ is not part of the test suite proper)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RESNET8 = "confirm_patience3_resnet8"


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script from the repo root; a non-zero exit fails with its stderr."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_benchmark_without_gpu_says_so_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = run_script(REPO / "benchmarks" / "gpu.py", "--out", str(out))
    assert "no GPU" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["gpu"] is False and "no GPU" in doc["message"]
    machine = doc["machine"]
    assert machine["cpu_count"] and machine["torch"] == torch.__version__
    assert machine["device"] == "cpu" and machine["date"]


SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_script_parses_its_arguments(script: Path) -> None:
    """Every script imports and answers --help (a broken import would only show when run)."""
    proc = run_script(script, "--help")
    assert "--out" in proc.stdout
    # --quick is offered exactly by the scripts that have a quick mode
    assert ("--quick" in proc.stdout) == ("args.quick" in script.read_text()), script.name


def test_policy_pooled_agrees_with_each_sweeps_own_pairing(tmp_path: Path) -> None:
    """The pool over seeds is the committed sweeps' paired differences side by side."""
    out = tmp_path / "pooled.json"
    run_script(REPO / "benchmarks" / "policy_pooled.py", "--out", str(out))
    pools = {p["name"]: p for p in json.loads(out.read_text())["pools"]}

    def own(folder: str) -> dict[str, list[float]]:
        path = REPO / "benchmarks" / "results" / folder / "comparison.json"
        paired = json.loads(path.read_text())["paired"]
        return {p["policy"]: p["final_test_acc"]["diffs"] for p in paired}

    fresh, confirm = own("rule_decision_fresh"), own("confirm_patience3_fresh")
    p3 = pools["default policy, patience 3 - constant"]["final_test_acc"]
    assert p3["seeds"] == [str(s) for s in range(15)] and p3["n"] == 15
    assert p3["diffs"][5:10] == pytest.approx(fresh["midpoint_p3"])  # that sweep's own pairs
    assert p3["diffs"][10:] == pytest.approx(confirm["range_test"])
    p0 = pools["default policy, patience 0 - constant"]["final_test_acc"]
    assert p0["seeds"] == [str(s) for s in range(10)]
    assert p0["diffs"][5:] == pytest.approx(fresh["midpoint_p0"]) and p0["ci95"] > 0

    # across two sweeps: the settled ResNet-8 arm pairs with the earlier sweep's arms by seed
    def test_acc(folder: str, label: str) -> list[float]:
        path = REPO / "benchmarks" / "results" / folder / "comparison.json"
        runs = [r for r in json.loads(path.read_text())["runs"] if r["policy"] == label]
        return [r["final_test_acc"] for r in sorted(runs, key=lambda r: r["seed"])]

    settled = test_acc("confirm_patience3_resnet8_settled", "range_test")
    unsettled = test_acc(RESNET8, "range_test")
    r8 = pools["ResNet-8: settled - unsettled range test"]["final_test_acc"]
    assert r8["seeds"] == [str(s) for s in range(5)]
    assert r8["diffs"] == pytest.approx([a - b for a, b in zip(settled, unsettled, strict=True)])

    # ResNet-8 over seeds 0-9: the fresh sweep's own pairs are the last five
    r8_fresh = own("confirm_patience3_resnet8_fresh")
    r8_all = pools["ResNet-8, seeds 0-9: range test - constant"]["final_test_acc"]
    assert r8_all["seeds"] == [str(s) for s in range(10)] and r8_all["n"] == 10
    assert r8_all["diffs"][5:] == pytest.approx(r8_fresh["range_test"])
    assert r8_all["diffs"][:5] == pytest.approx(
        [a - b for a, b in zip(settled, test_acc(RESNET8, "constant"), strict=True)]
    )

    # ten more seeds: the pool over 15-24 is that sweep's own pairing without its rerun of
    # seed 14, which did not reproduce on another CPU, so the 20-seed pool is not read
    more = own("confirm_patience3_more")["range_test"]  # paired with reduce_on_plateau
    alone = pools["default policy - reduce_on_plateau, p 3, seeds 15-24"]["final_test_acc"]
    assert alone["seeds"] == [str(s) for s in range(15, 25)]
    assert alone["diffs"] == pytest.approx(more[1:])
    twenty = pools["default policy - reduce_on_plateau, p 3, 20 seeds on two CPUs"]
    assert twenty["final_test_acc"]["n"] == 20
    assert twenty["final_test_acc"]["diffs"][10:] == pytest.approx(more[1:])
    doc = json.loads(out.read_text())
    assert not all(r["equal"] for r in doc["reproduced"]) and doc["level_reading"] is None

    # the harder cuts: both pair with the same committed x 0.3 runs, so their two pools differ
    # by the plateau_cut sweep's own pairs (x 0.04 - x 0.1), seed for seed
    hard = {
        f: pools[f"reduce_on_plateau x {f} - x 0.3, p 3"]["final_test_acc"] for f in ("0.1", "0.04")
    }
    seeds = [str(s) for s in (0, 1, 2, 3, 4, 10, 11, 12, 13, 14)]
    assert hard["0.1"]["seeds"] == hard["0.04"]["seeds"] == seeds
    between = [a - b for a, b in zip(hard["0.04"]["diffs"], hard["0.1"]["diffs"], strict=True)]
    assert between == pytest.approx(own("plateau_cut")["reduce_on_plateau_x0.04"], abs=1e-12)
