"""Does the gradient noise scale of a state tell where its best LR lies, where the range test
cannot?

The oracle's best LR (``benchmarks/oracle.py``) falls from about the running LR early in a run
to 0.7-0.8 decade below it by epoch 10-14, on every well-set population, and the range test's
pick does not follow (``benchmarks/pick_offsets.py``: rho +0.15). McCandlish et al. 2018 ("An
Empirical Model of Large-Batch Training") predict the best SGD step for batch B as
eps_max / (1 + B_noise / B): the larger the gradient noise against the gradient itself, the
smaller the best step, and B_noise grows as training goes on. This measures their "simple"
noise scale, B_simple = tr(Sigma) / |G|^2, at every cached well-set oracle state, from k
training batches at the state (train mode, as training computes gradients; nothing stepped),
with their unbiased two-batch-size estimators (appendix A: per-batch gradients of size b, their
mean of size k b), and writes it beside the state's oracle and picks.

A state's checkpoint is read from the oracle's state cache (``.<result>_states``); a missing
one is retrained by ``oracle.make_states`` (deterministic on one CPU: the state's val loss is
checked against the cached curve's).

    .venv/bin/python benchmarks/noise_scale.py --shard 0/2 & \
        .venv/bin/python benchmarks/noise_scale.py --shard 1/2; wait
    .venv/bin/python benchmarks/noise_scale.py --analyse-only
"""

from __future__ import annotations

import json
import time
from typing import Any

import _common as C
from _oracle_analysis import HORIZONS
from _oracle_setups import Setup
from oracle import (
    _shard,
    load_curves,
    load_setup_splits,
    load_state,
    make_states,
    make_trial,
    stale_message,
    stale_states,
)
from progress_rule import CALIBRATION, VALIDATION

#: The well-set populations ``benchmarks/progress_rule.py`` scores (its epoch is read beside).
SETUPS: tuple[Setup, ...] = (*CALIBRATION, *(s for setups in VALIDATION.values() for s in setups))
#: Training batches per measurement: half an epoch of the 4,000-image states.
NUM_BATCHES = 40
CACHE = C.RESULTS_DIR / "noise_scale_states"  # one JSON per state
OPTIMIZERS = ("adam", "sgd")
#: The state signals correlated with the oracle: B_simple, |G|^2, val - train loss, epoch.
SIGNALS = ("b_simple", "grad_sq", "gap", "epoch")


def measure(trial: Any, epoch: int, num_batches: int) -> dict[str, float]:
    """B_simple and its parts from ``num_batches`` batches of the next epoch's stream."""
    import torch
    import torch.nn.functional as F

    model = trial.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    total = None
    small_sq = 0.0
    b = 0
    loss_sum = 0.0
    for _, (x, y) in zip(range(num_batches), trial.epoch_batches(epoch + 1), strict=False):
        b = int(y.numel())
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        loss_sum += float(loss.detach())
        g = torch.cat([p.grad.reshape(-1) for p in params]).double()
        small_sq += float(g @ g)
        total = g.clone() if total is None else total + g
    assert total is not None
    k = num_batches
    mean = total / k
    return two_batch_estimate(small_sq / k, float(mean @ mean), b, k * b) | {
        "batch": b,
        "train_loss": loss_sum / k,  # as the loop reports it: train mode, augmented batches
    }


def two_batch_estimate(
    small_sq: float, big_sq: float, b_small: int, b_big: int
) -> dict[str, float]:
    """McCandlish et al.'s unbiased estimates from gradients at two batch sizes (appendix A):
    ``small_sq`` the mean |G|^2 of batches of ``b_small`` examples, ``big_sq`` the |G|^2 of one
    batch of ``b_big``. Returns |G|^2, tr(Sigma) (per example) and B_simple = tr(Sigma) / |G|^2.
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small} and {b_big}")
    grad_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1 / b_small - 1 / b_big)
    return {"grad_sq": grad_sq, "trace": trace, "b_simple": trace / grad_sq}


def compute(args: Any) -> None:
    import torch

    from trainables.device import select_device

    torch.set_num_threads(1)
    device = select_device("cpu", cpus_assigned=1)
    CACHE.mkdir(exist_ok=True)
    for setup_ in SETUPS:
        out = C.RESULTS_DIR / f"{setup_.name}.json"
        curves = load_curves(out.with_name(f"{out.stem}_curves"), setup_)["states"]
        states_dir = out.with_name(f".{out.stem}_states")
        if all((CACHE / f"{setup_.name}-{sid}.json").is_file() for sid in curves):
            continue
        splits = load_setup_splits(setup_, args.data_dir)
        info = make_states(setup_, splits, device, states_dir, args.shard)
        if stale := stale_states(curves, info):
            raise SystemExit(stale_message(stale, out.with_name(f"{out.stem}_curves")))
        for sid, meta in sorted(info.items()):
            key = f"{setup_.name}/{sid}"
            path = CACHE / f"{setup_.name}-{sid}.json"
            if path.is_file() or sid not in curves:
                continue
            t0 = time.perf_counter()
            trial = make_trial(
                setup_, splits, device, meta["optimizer"], meta["running_lr"], meta["seed"]
            )
            load_state(trial, states_dir, sid)
            result = measure(trial, meta["epoch"], NUM_BATCHES)
            path.write_text(json.dumps(result, indent=1) + "\n")
            print(f"{key}: B_simple {result['b_simple']:.0f}, {time.perf_counter() - t0:.1f} s")


def analyse() -> dict[str, Any]:
    """Per population and optimizer, Spearman's rho of each state signal with the mean oracle's
    offset at both horizons; the epoch beside them (``benchmarks/progress_rule.py``)."""
    from oracle_pooled import pooled_rows

    out: dict[str, Any] = {}
    for setup_ in SETUPS:
        rows, _ = pooled_rows(C.RESULTS_DIR, (setup_,))
        states = []
        for r in rows["ours_midpoint"]:
            path = CACHE / f"{setup_.name}-{r['state']}.json"
            if not path.is_file():
                continue
            m = json.loads(path.read_text())
            curve = json.loads(
                (C.RESULTS_DIR / f"{setup_.name}_curves" / f"{r['state']}.json").read_text()
            )
            states.append(
                {
                    "state": r["state"],
                    "optimizer": r["optimizer"],
                    "oracle": r["oracle"],
                    "epoch": r["epoch"],
                    "b_simple": m["b_simple"],
                    "grad_sq": m["grad_sq"],
                    "gap": curve["val_loss"] - m["train_loss"],
                }
            )
        if states:
            out[setup_.name] = {"groups": correlations(states), "states": states}
    if out:
        pooled = [s for res in out.values() for s in res["states"]]
        out["all setups"] = {"groups": correlations(pooled), "states": []}
    return out


def correlations(states: list[dict]) -> dict[str, Any]:
    """{optimizer: {"n", horizon: {signal: Spearman rho with the oracle offset}}}."""
    from scipy.stats import spearmanr

    groups: dict[str, Any] = {}
    for opt in OPTIMIZERS:
        g = [s for s in states if s["optimizer"] == opt]
        groups[opt] = {"n": len(g)} | {
            h: {
                sig: float(spearmanr([s[sig] for s in g], [s["oracle"][h] for s in g])[0])
                for sig in SIGNALS
            }
            for h in HORIZONS
        }
    return groups


def lines(result: dict[str, Any]) -> list[str]:
    out = ["Spearman rho with the mean oracle's offset (half an epoch / 2 epochs)"]
    out.append(f"{'setup':20s} {'opt':4s} {'n':>3s}  " + "  ".join(f"{s:>13s}" for s in SIGNALS))
    for name, res in result.items():
        for opt, g in res["groups"].items():
            cells = [f"{g['half'][s]:+.2f} / {g['2ep'][s]:+.2f}" for s in SIGNALS]
            out.append(f"{name:20s} {opt:4s} {g['n']:3d}  " + "  ".join(f"{c:>13s}" for c in cells))
    return out


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    parser.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N")
    parser.add_argument("--analyse-only", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if not args.analyse_only:
        compute(args)
        if args.shard[1] > 1:
            print("shard done; run --analyse-only once every shard has finished", flush=True)
            return 0
    result = analyse()
    if not result:
        print(f"no measured states in {CACHE}", flush=True)
        return 1
    print("\n".join(lines(result)), flush=True)
    C.write_result(
        "noise_scale",
        {"seconds": time.perf_counter() - t0, "num_batches": NUM_BATCHES, "setups": result},
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
