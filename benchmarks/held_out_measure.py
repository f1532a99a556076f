"""Is one held-out batch enough? The default range test, re-measured on the whole validation set.

On a badly set LR the default test often declines (Adam 10x too low: its held-out curve is flat
or rises from the start) or overshoots (SGD 10x too low). This replays the default test from
the cached states of ``benchmarks/oracle.py --setup misset / misset-val / misset-test`` (Adam
1e-4 and SGD 0.002 only), on exactly the batches and LRs the policy used (``Trial.probe``'s
stream: the same held-out batch, the same training batches), and after every step measures the
loss both on the held-out batch of 50 images (what the policy reads; checked equal to the
cached curve) and on all 2,000 validation images. Both curves go through the policy's own
``decide`` (defaults), and are scored against each state's 2-epoch oracle (cached; the loss
at a pick off the grid is interpolated, nothing is trained).

    .venv/bin/python benchmarks/held_out_measure.py        # ~4-5 min on 2 cores, needs the states
"""

from __future__ import annotations

import math
import time
from typing import Any

import _common as C
import _oracle_setups
import oracle as O
import torch
import torch.nn.functional as F
from _oracle_analysis import MEASURED_RULE, loss_at, oracle_offset, our_pick, result_of

SETUPS = ("misset", "misset-val", "misset-test")
RUNS = ("adam0.0001", "sgd0.002")  # the states whose running LR is 10x too low


def replay(
    trial: Any, epoch: int, lrs: list[float], steps_per_lr: int = 1, whole_val: bool = True
) -> dict:
    """The policy's test on its own stream (``Trial.probe``'s held-out batch and training
    batches), ``steps_per_lr`` training batches at each LR of ``lrs``; after each LR the loss on
    the held-out batch and (``whole_val``) on the whole validation set. One step per LR of the
    default ladder is the policy's own test. Stops on a non-finite loss or at 4x the first."""
    from trainables.loop import STREAM_RANGE_TEST, evaluate, seeded_generator, stream_seed
    from trainables.lr import TrainingSnapshot

    gen = seeded_generator(stream_seed(trial.cfg.seed, epoch, STREAM_RANGE_TEST, 0))
    (hx, hy), batches = trial.train_pipe.held_out_and_stream(gen)
    done: list[float] = []
    batch_losses: list[float | None] = []
    val_losses: list[float] = []
    model, optimizer = trial.model, trial.optimizer
    with TrainingSnapshot.capture(model, optimizer):
        for lr in lrs:
            model.train()
            for _ in range(steps_per_lr):
                trial.train_step(*next(batches), lr)
            model.eval()
            with torch.no_grad():
                batch = float(F.cross_entropy(model(hx), hy))
            done.append(lr)
            batch_losses.append(batch if math.isfinite(batch) else None)
            watched = batch
            if whole_val:
                val, _ = evaluate(model, trial.val_pipe, trial.setup)
                val_losses.append(val)
                watched = val
            first = val_losses[0] if whole_val else batch_losses[0]
            if not math.isfinite(watched) or first is None or watched > 4 * first:
                break  # diverged: the policy's own test stops here too, or sooner
    out: dict[str, Any] = {"lrs": done, "held_out": batch_losses}
    return out | ({"validation": val_losses} if whole_val else {})


def main() -> int:
    from trainables.device import select_device
    from trainables.lr import lr_ladder

    args = C.base_parser(__doc__.splitlines()[0], quick=False).parse_args()
    torch.set_num_threads(2)
    device = select_device("cpu", cpus_assigned=2)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in SETUPS:
        setup_ = _oracle_setups.SETUPS[name]
        splits = O.load_setup_splits(setup_, args.data_dir)
        states = C.RESULTS_DIR / f".{setup_.name}_states"
        curves = O.load_curves(C.RESULTS_DIR / f"{setup_.name}_curves", setup_)["states"]
        for sid, entry in sorted(curves.items()):
            if not sid.startswith(RUNS):
                continue
            if not (states / f"{sid}.pt").exists():
                print(f"{sid}: no cached state in {states} (run benchmarks/oracle.py first)")
                return 1
            running = entry["running_lr"]
            trial = O.make_trial(setup_, splits, device, entry["optimizer"], running, entry["seed"])
            O.load_state(trial, states, sid)
            cached = entry["range_tests"]["held_out_default"]
            ladder = lr_ladder(1e-6, 1.0, cached["num_steps"]).tolist()
            curve = replay(trial, entry["epoch"], ladder)
            drift = replay_drift(curve["lrs"], curve["held_out"], cached)
            points = entry["oracle"]["0"]
            row: dict[str, Any] = {
                "setup": name,
                "state": sid,
                "oracle_2ep": oracle_offset(points, "2ep"),
                "replay_max_abs_diff_before_divergence": drift,
                "curves": curve,
            }
            for measure in ("held_out", "validation"):
                doc = {"lrs": curve["lrs"], "losses": curve[measure], "stop_reason": "completed"}
                pick, applied = our_pick(doc, MEASURED_RULE, running)
                offset = math.log10(applied / running)
                delta = loss_at(points, "2ep", offset)
                keep = loss_at(points, "2ep", 0.0)
                row[measure] = {
                    "pick": None if pick is None else math.log10(pick / running),
                    "applied": offset,
                    "delta_2ep_interpolated": None if delta is None else delta - keep,
                }
            rows.append(row)
            h, v = row["held_out"], row["validation"]
            print(
                f"{name:12} {sid:18} oracle {_off(row['oracle_2ep'])}  held-out batch: pick "
                f"{_off(h['pick'])} applied {_off(h['applied'])} "
                f"Δ {_off(h['delta_2ep_interpolated'])}"
                f"  |  2,000 val: pick {_off(v['pick'])} applied {_off(v['applied'])} "
                f"Δ {_off(v['delta_2ep_interpolated'])}  (replay vs policy curve: {drift:.1e})",
                flush=True,
            )
    C.write_result(
        "held_out_measure",
        {"seconds": time.perf_counter() - t0, "rows": rows},
        args.out,
    )
    return 0


def replay_drift(lrs: list[float], losses: list[float | None], cached: dict) -> float:
    """Largest |replayed - recorded| held-out loss before the recorded curve began to diverge
    (past it, float rounding from other thread counts grows chaotically)."""
    from trainables.lr import analyse_curve

    result = result_of(cached)
    limit = analyse_curve(result.lrs, result.losses).diverge_lr or math.inf
    pairs = zip(lrs, losses, result.losses, strict=False)
    return max((abs(a - b) for lr, a, b in pairs if lr < limit and a is not None), default=0.0)


def _off(x: float | None) -> str:
    return "  none" if x is None else f"{x:+.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
