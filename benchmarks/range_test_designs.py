"""Would another range-test design read the curve better? Several steps per LR, or a range
around the running LR, against the default (one step per LR, 1e-6 .. 1, 20 points).

The default test's pick follows the short-horizon optimum, and on a badly set LR it declines on
25 of 40 curves. Two changes to the test itself could help: ``k`` training batches at each LR
(the held-out loss then shows what k steps at that LR do, a longer horizon), and a ladder over
the running LR x 1e-2 .. x 1e2 (or 1e-3 .. 1e2) instead of the absolute 1e-6 .. 1 (finer steps
where the answer lies). Each design is replayed from every cached oracle state
(``benchmarks/oracle.py``: the 24 well-set states and the 40 badly set ones) on the policy's
own stream, read by the policy's own ``decide`` (defaults, ``max_change: 10`` included), and
scored against the cached oracles: the pick's and the applied LR's |error| (mean oracle of the
four streams for the well-set states, the first stream otherwise) and the applied LR's 2-epoch
validation loss against keeping the running LR (interpolated between trained grid points).
Nothing is trained at the picks. The default design is replayed too and must reproduce the
policy's recorded curve (``replay vs policy``).

    python benchmarks/range_test_designs.py --shard 0/2 & \\
        python benchmarks/range_test_designs.py --shard 1/2; wait     # ~12 min on 2 cores
    python benchmarks/range_test_designs.py --analyse-only             # the table, ~5 s
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as C
import _oracle_setups
import numpy as np
import oracle as O
import torch
from _oracle_analysis import MEASURED_RULE, loss_at, oracle_offset, our_pick, pooled_oracle
from held_out_measure import replay, replay_drift

NOISE_2EP = 0.043  # the oracle's loss noise at 2 epochs (docs/range_test_oracle.md)
GROUPS = {
    "well-set (24)": ("full",),
    "badly set (40)": ("misset", "misset-val", "misset-test"),
    "misset-test (16)": ("misset-test",),
}
SHARDS = C.RESULTS_DIR / "range_test_designs_curves"  # the replayed curves, per shard


@dataclass(frozen=True)
class Design:
    steps_per_lr: int
    relative: bool  # the range is a multiple of the running LR
    low: float
    high: float
    points: int = 20

    def ladder(self, running: float) -> list[float]:
        from trainables.lr import lr_ladder

        scale = running if self.relative else 1.0
        return lr_ladder(self.low * scale, min(self.high * scale, 10.0), self.points).tolist()


DESIGNS = {
    "default": Design(1, False, 1e-6, 1.0),
    "2 steps per LR": Design(2, False, 1e-6, 1.0),
    "4 steps per LR": Design(4, False, 1e-6, 1.0),
    "running x 1e-2..1e2": Design(1, True, 1e-2, 1e2),
    "running x 1e-2..1e2, 2 steps": Design(2, True, 1e-2, 1e2),
    "running x 1e-3..1e2, 2 steps": Design(2, True, 1e-3, 1e2),
}


def measure(args: Any, shard: tuple[int, int]) -> None:
    from trainables.device import select_device

    torch.set_num_threads(1)
    device = select_device("cpu", cpus_assigned=1)
    rows = []
    splits: dict[tuple[int, int], Any] = {}  # the setups share their images: read them once
    jobs = [
        (name, sid)
        for name in sorted({s for g in GROUPS.values() for s in g})
        for sid in sorted(_curves(name))
    ]
    for name, sid in jobs[shard[0] :: shard[1]]:
        setup_ = _oracle_setups.SETUPS[name]
        entry = _curves(name)[sid]
        states = C.RESULTS_DIR / f".{setup_.name}_states"
        if not (states / f"{sid}.pt").exists():
            raise SystemExit(f"{sid}: no cached state in {states} (run benchmarks/oracle.py first)")
        images = (setup_.train, setup_.val)
        if images not in splits:
            splits[images] = O.load_setup_splits(setup_, args.data_dir)
        running = entry["running_lr"]
        trial = O.make_trial(
            setup_, splits[images], device, entry["optimizer"], running, entry["seed"]
        )
        O.load_state(trial, states, sid)
        t0 = time.perf_counter()
        curves = {
            d: replay(trial, entry["epoch"], design.ladder(running), design.steps_per_lr, False)
            for d, design in DESIGNS.items()
        }
        cached = entry["range_tests"]["held_out_default"]
        d = curves["default"]
        drift = replay_drift(d["lrs"], d["held_out"], cached)
        rows.append({"setup": name, "state": sid, "replay_vs_policy": drift, "curves": curves})
        print(f"{name:12} {sid:20} {time.perf_counter() - t0:5.1f} s  replay vs policy {drift:.1e}")
    SHARDS.mkdir(parents=True, exist_ok=True)
    (SHARDS / f"{shard[0]}_of_{shard[1]}.json").write_text(json.dumps(rows))


def analyse(args: Any) -> None:
    rows = [r for f in sorted(SHARDS.glob("*_of_*.json")) for r in json.loads(f.read_text())]
    if not rows:
        raise SystemExit(f"no measurements in {SHARDS}: run with --shard first")
    scores: dict[str, dict[str, dict]] = {}
    for group, setups in GROUPS.items():
        members = [r for r in rows if r["setup"] in setups]
        scores[group] = {d: _score(members, d) for d in DESIGNS}
    worst = max(r["replay_vs_policy"] for r in rows)
    print(f"{len(rows)} states; the default design's replay vs the policy's curve: {worst:.1e}")
    for group, by_design in scores.items():
        print(f"\n{group}")
        print(
            f"{'design':30} none  pick |e| 2ep / half  bias 2ep  applied |e| 2ep  "
            "Δ val loss 2ep: mean  median  worse  better"
        )
        for d, s in by_design.items():
            print(
                f"{d:30} {s['none']:4}  {_n(s['pick_2ep'])} / {_n(s['pick_half'])}"
                f"        {_n(s['bias_2ep'], True)}     {_n(s['applied_2ep'])}"
                f"            {_n(s['delta_mean'], True, 3)} {_n(s['delta_median'], True, 3)}"
                f"  {s['worse']:5}  {s['better']:6}"
            )
    C.write_result(
        "range_test_designs",
        {
            "designs": {k: vars(v) for k, v in DESIGNS.items()},
            "states": len(rows),
            "replay_vs_policy_max_abs": worst,
            "scores": scores,
        },
        args.out,
    )


def _score(rows: list[dict], design: str) -> dict[str, Any]:
    err: dict[str, list[float]] = {"pick_2ep": [], "pick_half": [], "bias_2ep": []}
    applied_err, deltas, none = [], [], 0
    for r in rows:
        entry = _curves(r["setup"])[r["state"]]
        running, points = entry["running_lr"], entry["oracle"]["0"]
        oracle = {h: _oracle(entry, h) for h in ("half", "2ep")}
        curve = r["curves"][design]
        doc = {"lrs": curve["lrs"], "losses": curve["held_out"], "stop_reason": "completed"}
        suggested, applied = our_pick(doc, MEASURED_RULE, running)
        if suggested is None:
            none += 1
        else:
            pick = math.log10(suggested / running)
            err["pick_2ep"].append(abs(pick - oracle["2ep"]))
            err["pick_half"].append(abs(pick - oracle["half"]))
            err["bias_2ep"].append(pick - oracle["2ep"])
        offset = math.log10(applied / running)
        applied_err.append(abs(offset - oracle["2ep"]))
        at, keep = loss_at(points, "2ep", offset), loss_at(points, "2ep", 0.0)
        ok = at is not None and keep is not None and math.isfinite(at)
        deltas.append(at - keep if ok else math.inf)  # type: ignore[operator]
    med = {k: float(np.median(v)) if v else None for k, v in err.items()}
    return {
        "states": len(rows),
        "none": none,
        **med,
        "applied_2ep": float(np.median(applied_err)),
        "delta_mean": float(np.mean(deltas)),
        "delta_median": float(np.median(deltas)),
        "worse": sum(d > NOISE_2EP for d in deltas),
        "better": sum(d < -NOISE_2EP for d in deltas),
    }


def _oracle(entry: dict, horizon: str) -> float:
    """The mean oracle of the four streams where the state has them, else the first stream's."""
    pooled = pooled_oracle(entry, horizon, 4)
    found = pooled if pooled is not None else oracle_offset(entry["oracle"]["0"], horizon)
    assert found is not None, "every cached state has an oracle"
    return found


_CACHE: dict[str, dict] = {}


def _curves(name: str) -> dict:
    if name not in _CACHE:
        setup_ = _oracle_setups.SETUPS[name]
        path: Path = C.RESULTS_DIR / f"{setup_.name}_curves"
        _CACHE[name] = O.load_curves(path, setup_)["states"]
    return _CACHE[name]


def _n(x: float | None, signed: bool = False, digits: int = 2) -> str:
    if x is None:
        return "    -"
    return f"{x:+.{digits}f}" if signed else f"{x:5.{digits}f}"


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th state from the i-th")
    parser.add_argument("--analyse-only", action="store_true", help="score the measured shards")
    args = parser.parse_args()
    if not args.analyse_only:
        i, n = (int(v) for v in args.shard.split("/"))
        measure(args, (i, n))
        if n > 1:
            return 0
    analyse(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
