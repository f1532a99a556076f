"""How much of a BatchNorm net's range-test descent is its running statistics catching up?

The held-out loss is read in eval mode, through BatchNorm's running statistics, which follow
the weights with momentum 0.1. From each of the 12 ResNet-8 states of ``oracle.py --setup
full-resnet8`` (retrained exactly when not saved) this runs the default 20-step held-out test
twice at LR ~0 (1e-12: nothing is learnt), without and with settling the statistics first
(``run_range_test(settle_batches=...)``), and once over the default LR range, settled. Each
state's figures: the zero-LR curve's drop over the test, and the default policy's raw pick and
applied LR from both default curves (the unsettled one is the committed curve) against the mean
oracle of the committed curves, with the applied LR's change in val loss against keeping the
running LR interpolated on the oracle grid (not trained).

    .venv/bin/python benchmarks/norm_drift.py   # ~2 min on 2 cores, given the states
"""

from __future__ import annotations

import json
import sys
from typing import Any

import _common as C

SETUP = "full-resnet8"
ZERO_LR = (1e-12, 2e-12)


def state_curves(trial: Any, epoch: int) -> dict[str, dict[str, Any]]:
    """The zero-LR tests without and with settling, and the default test settled."""
    import oracle

    from trainables.lr import make_policy

    policy = make_policy(
        "range_test_on_plateau",
        {},
        base_lr=trial.policy.base_lr,
        steps_per_epoch=trial.steps_per_epoch,
    )
    n, probe = policy.probe_steps(), trial.probe(epoch)
    tests = {
        "zero_lr_unsettled": probe(*ZERO_LR, n, "held_out", settle_batches=0),
        "zero_lr_settled": probe(*ZERO_LR, n, "held_out"),
        "default_settled": probe(policy.min_lr, policy.max_lr, n, "held_out"),
    }
    return {name: oracle.curve_doc(result, "held_out", n) for name, result in tests.items()}


def scored(entry: dict[str, Any], curve: dict[str, Any], streams: int) -> dict[str, Any]:
    """The default policy's raw pick and applied LR on ``curve``, with their errors against
    the mean oracle and the applied LR's change in val loss (``_oracle_analysis`` rows)."""
    import _oracle_analysis as A

    running = entry["running_lr"]
    pick, applied = A.our_pick(curve, None, running)
    oracle = {h: A.pooled_oracle(entry, h, streams) for h in A.HORIZONS}
    row = {"running_lr": running, "oracle": oracle, "pick": pick, "applied": applied}
    return A.with_errors(row, entry["oracle"]["0"])


def summarise(rows: list[dict[str, Any]], noise: dict[str, float]) -> dict[str, Any]:
    """``_oracle_analysis.delta_scores`` of the applied LRs, and the raw picks' median errors."""
    import _oracle_analysis as A

    out = A.delta_scores(rows, noise)
    out["answered"] = sum(r["pick"] is not None for r in rows)
    for h in A.HORIZONS:
        errs = [e for r in rows if (e := r["err"][h]) is not None]
        out[h]["pick_median_abs"] = A.quantile([abs(e) for e in errs], 0.5)
        out[h]["pick_median_signed"] = A.quantile(errs, 0.5)
    return out


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()

    import _oracle_analysis as A
    import _oracle_setups
    import oracle
    import torch

    from trainables.device import select_device

    torch.set_num_threads(1)
    setup_ = _oracle_setups.SETUPS[SETUP]
    doc = oracle.load_curves(C.RESULTS_DIR / f"{setup_.name}_curves", setup_)
    if not doc["states"]:
        print(f"no cached curves of {SETUP}: run oracle.py --setup {SETUP} first")
        return 1
    noise = A.loss_noise_of(A.oracle_noise(doc))
    streams = A.stream_count(doc)
    device = select_device("cpu", cpus_assigned=1)
    splits = oracle.load_setup_splits(setup_, args.data_dir)
    states_dir = C.RESULTS_DIR / f".{setup_.name}_states"
    oracle.make_states(setup_, splits, device, states_dir, (0, 1))
    states: dict[str, Any] = {}
    for sid, entry in sorted(doc["states"].items()):
        trial = oracle.make_trial(
            setup_, splits, device, entry["optimizer"], entry["running_lr"], entry["seed"]
        )
        oracle.load_state(trial, states_dir, sid)
        curves = state_curves(trial, entry["epoch"])
        drop = {
            k: curves[f"zero_lr_{k}"]["losses"][0] - curves[f"zero_lr_{k}"]["losses"][-1]
            for k in ("unsettled", "settled")
        }
        states[sid] = {
            "zero_lr_drop": drop,
            "unsettled": scored(entry, entry["range_tests"]["held_out_default"], streams),
            "settled": scored(entry, curves["default_settled"], streams),
            "curves": curves,
        }
        print(
            f"{sid:13s} zero-LR drop {drop['unsettled']:+.3f} unsettled, "
            f"{drop['settled']:+.3f} settled",
            flush=True,
        )
    summary: dict[str, Any] = {
        "zero_lr_drop_median": {
            k: C.median([s["zero_lr_drop"][k] for s in states.values()])
            for k in ("unsettled", "settled")
        },
        **{k: summarise([s[k] for s in states.values()], noise) for k in ("unsettled", "settled")},
    }
    print(json.dumps(summary, indent=1))
    C.write_result(
        "norm_drift_resnet8", {"setup": SETUP, "summary": summary, "states": states}, args.out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
