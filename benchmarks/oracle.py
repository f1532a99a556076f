"""Ground truth for "the right LR at this plateau": range-test picks against an LR oracle.

States: seed_cnn (``--setup full-resnet8``: ResNet-8) on a real CIFAR-10 subset (4,000
training / 2,000 validation images, batch 50), trained at a constant LR -- Adam 1e-3 and SGD
with momentum 0.9 at 0.02 -- for several seeds; the state (weights, optimizer, RNGs) is kept at
several epochs of each run. Every population (``--setup NAME``) and the reading fixed before it
was trained: ``_oracle_setups.py``.

The oracle, per state: restore the state (``TrainingSnapshot``), train at one LR of a log grid
for 2 epochs with the loop's own ``Trial.train_steps``, and read the validation loss and
accuracy after half an epoch and after 2 epochs (one run, both horizons). The grid spans
3 decades around the running LR (0.5 decade apart), is extended while the best LR sits on its
edge, then refined to 0.125 decade around the best of each horizon; the LR the policy applies
is trained too (its loss is measured, not interpolated). The oracle LR of a horizon is the
vertex of a parabola through the validation losses around the grid's best (the grid's best
when the parabola does not fit). The oracle is repeated on three more, independent data
streams (other data orders for the same epochs: ``Trial.epoch_batches(epoch, replica=k)``),
around the first stream's best, to measure its own noise and to average it out.

The range tests: from the same state, through the policy's own code path (``Trial.probe`` and
``RangeTestOnPlateauLR.decide`` with the policy's defaults: 20 steps, held-out batch; the LR
each no-descent ``fallback`` applies is trained too); also
40 / 80 steps and the training-batch measure, to study the smoothing. Every suggestion rule --
ours, torch-lr-finder's and fastai's (``benchmarks/_reference_rules.py``) -- is applied to the
same curves and scored against the oracle at both horizons.

Expensive results are cached: the states in ``<out dir>/.<out stem>_states/`` (not in git), the
oracle and range-test curves of each state in ``<out stem>_curves/<state>.json`` next to the
result (in git), written after every training run, so an interrupted run resumes and
``--analyse-only`` re-analyses without training anything (``_oracle_analysis.py``).

    .venv/bin/python benchmarks/oracle.py --shard 0/2 & .venv/bin/python benchmarks/oracle.py \
        --shard 1/2; wait; .venv/bin/python benchmarks/oracle.py --analyse-only  # ~4.5 h, 2 cores
    .venv/bin/python benchmarks/oracle.py --quick      # < 2 min sanity run (tiny, meaningless)
    .venv/bin/python benchmarks/oracle.py --analyse-only
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _common as C
from _oracle_analysis import (
    HORIZONS,
    analyse,
    best_offset,
    lr_key,
    our_pick,
    policy_settings,
)
from _oracle_report import plot_scatter, table
from _oracle_setups import QUICK, SETUPS, Setup

EDGE_STEP, MAX_EDGE = 0.5, 2


# -- the trial ---------------------------------------------------------------------------------
def load_setup_splits(setup_: Setup, data_dir: str | None) -> Any:
    """The real CIFAR-10 subsets of ``setup_`` (never downloaded)."""
    from trainables.data import load_splits

    return load_splits(
        data_dir, train_subset=setup_.train, val_subset=setup_.val, test_subset=100, download=False
    )


def make_trial(
    setup_: Setup, splits: Any, device: Any, optimizer: str, lr: float, seed: int
) -> Any:
    from trainables.config import TrialConfig
    from trainables.loop import Trial

    cfg = TrialConfig.model_validate(
        {
            "model": setup_.model,
            "optimizer": optimizer,
            "lr": lr,
            "momentum": 0.9,
            "weight_decay": setup_.weight_decay,
            "batch_size": 50,
            "seed": seed,
            "policy": "range_test_on_plateau",
        }
    )
    return Trial(cfg, splits, device)


def make_states(
    setup_: Setup, splits: Any, device: Any, states_dir: Path, shard: tuple[int, int]
) -> dict[str, dict]:
    """Train one constant-LR run per (optimizer, seed); keep the state at the listed epochs.

    ``shard`` (i, n): only every n-th run from the i-th (parallel processes split the work).
    """
    import torch

    from trainables.loop import evaluate
    from trainables.lr.plateau import PlateauDetector

    states_dir.mkdir(parents=True, exist_ok=True)
    info: dict[str, dict] = {}
    runs = list(itertools.product(setup_.runs, setup_.seeds))
    for (opt, lr, epochs), seed in runs[shard[0] :: shard[1]]:
        meta_path = states_dir / f"{setup_.run_name(opt, lr, seed)}.json"
        ids = (
            list(json.loads(meta_path.read_text()))
            if setup_.plateau_patience is not None and meta_path.exists()
            else [setup_.state_id(opt, lr, seed, e) for e in epochs]
        )
        if all((states_dir / f"{i}.pt").exists() for i in ids) and meta_path.exists():
            info.update(json.loads(meta_path.read_text()))
            continue
        trial = make_trial(setup_, splits, device, opt, lr, seed)  # end_epoch is never called:
        detector = (
            None
            if setup_.plateau_patience is None
            else PlateauDetector(patience=setup_.plateau_patience)
        )
        meta: dict[str, dict] = {}
        t0 = time.perf_counter()
        for epoch in range(1, max(epochs) + 1):
            trial.train_epoch(epoch)
            trial.counters.epoch = epoch
            if detector is not None:
                val_loss, val_acc = evaluate(trial.model, trial.val_pipe, device)
                keep = detector.step(val_loss)
            elif epoch in epochs:
                val_loss, val_acc = evaluate(trial.model, trial.val_pipe, device)
                keep = True
            else:
                keep = False
            if keep:
                sid = setup_.state_id(opt, lr, seed, epoch)
                torch.save(trial.state(), states_dir / f"{sid}.pt")
                meta[sid] = {
                    "optimizer": opt,
                    "seed": seed,
                    "epoch": epoch,
                    "running_lr": lr,
                    "val_loss": val_loss,
                    "val_acc": val_acc,
                }
                if detector is not None:
                    break
        ids = list(meta)
        print(f"states {ids}: {time.perf_counter() - t0:.0f} s", flush=True)
        meta_path.write_text(json.dumps(meta, indent=1))
        info.update(meta)
    return info


def load_state(trial: Any, states_dir: Path, sid: str) -> None:
    import torch

    state = torch.load(states_dir / f"{sid}.pt", weights_only=True)
    state["policy"] = trial.policy.state_dict()  # a fresh range-test policy at that state
    trial.load(state)


# -- the oracle --------------------------------------------------------------------------------
def train_at(trial: Any, snap: Any, epoch: int, replica: int, lr: float, device: Any) -> dict:
    """Restore the state, train 2 epochs at ``lr``; val loss/acc after half an epoch and 2."""
    from trainables.loop import NonFiniteLossError, evaluate

    snap.restore()
    spe = trial.steps_per_epoch
    half = spe // 2
    batches = itertools.chain(
        trial.epoch_batches(epoch + 1, replica), trial.epoch_batches(epoch + 2, replica)
    )
    out: dict[str, Any] = {"lr": lr}
    try:
        trial.train_steps(batches, half, lr)
        out["half"] = _finite_pair(evaluate(trial.model, trial.val_pipe, device))
        trial.train_steps(batches, 2 * spe - half, lr)
        out["2ep"] = _finite_pair(evaluate(trial.model, trial.val_pipe, device))
    except NonFiniteLossError:
        out.setdefault("half", [None, None])
        out["2ep"] = [None, None]
    return out


def train_offset(
    trial: Any, snap: Any, epoch: int, replica: int, running_lr: float, device: Any, offset: float
) -> dict:
    return train_at(trial, snap, epoch, replica, running_lr * 10**offset, device)


def _finite_pair(pair: tuple[float, float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in pair]


def run_grid(
    points: dict[str, dict],
    train: Callable[[float], dict],
    coarse: tuple[float, ...],
    refine: tuple[float, ...],
    save: Callable[[], None],
) -> None:
    """Fill ``points`` (offset key -> result): coarse grid, edge extension, refinement.

    Every decision (extend an edge, refine around the best) reads only the points this grid
    has laid down so far, cached or trained: a resumed run replays the decisions of an
    uninterrupted one and trains exactly what it lacks, and a point added outside the grid
    (the LR the policy applies) never moves it.
    """
    laid: dict[str, dict] = {}

    def ensure(offset: float) -> None:
        key = lr_key(offset)
        if key not in points:
            points[key] = train(offset)
            save()
        laid[key] = points[key]

    for off in coarse:
        ensure(off)
    for horizon in HORIZONS:
        for _ in range(MAX_EDGE):
            best = best_offset(laid, horizon)
            offsets = sorted(float(k) for k in laid)
            if best is None:
                break
            if best == offsets[0]:
                ensure(best - EDGE_STEP)
            elif best == offsets[-1]:
                ensure(best + EDGE_STEP)
            else:
                break
    for step in refine:
        for horizon in HORIZONS:
            best = best_offset(laid, horizon)
            if best is not None:
                ensure(best - step)
                ensure(best + step)


# -- range tests -------------------------------------------------------------------------------
UNSETTLED = "_unsettled"
"""A probe name's suffix: the range test without settling the BatchNorm statistics first."""


def probe_name(measure: str, steps: int | None) -> str:
    return f"{measure}_{'default' if steps is None else steps}"


UNSETTLED_PROBE = probe_name(f"held_out{UNSETTLED}", None)


def curve_doc(result: Any, measure: str, num_steps: int) -> dict[str, Any]:
    """A range test's result as the curve caches keep it (non-finite losses as None)."""
    return {
        "measure": measure,
        "num_steps": num_steps,
        "lrs": list(result.lrs),
        "losses": [v if math.isfinite(v) else None for v in result.losses],
        "stop_reason": result.stop_reason,
        "images": result.images,
    }


def run_probes(trial: Any, epoch: int, probes: tuple[tuple[str, int | None], ...]) -> dict:
    from trainables.lr import make_policy

    out = {}
    base = trial.policy
    try:
        for name, steps in probes:
            measure = name.removesuffix(UNSETTLED)  # the same test, BatchNorm statistics as is
            settle = {"settle_batches": 0} if name.endswith(UNSETTLED) else {}
            params: dict[str, Any] = {"measure": measure}
            if steps is not None:
                params["num_steps"] = steps
            policy = make_policy(
                "range_test_on_plateau",
                params,
                base_lr=base.base_lr,
                steps_per_epoch=trial.steps_per_epoch,
            )
            trial.policy = policy
            n = policy.probe_steps()
            result = trial.probe(epoch)(policy.min_lr, policy.max_lr, n, policy.measure, **settle)
            out[probe_name(name, steps)] = curve_doc(result, measure, n)
    finally:
        trial.policy = base
    return out


# -- the run -----------------------------------------------------------------------------------
def load_curves(curves_dir: Path, setup_: Setup) -> dict:
    """Every cached state of this setup: {"setup": ..., "states": {state id: entry}}."""
    states = {}
    for path in sorted(curves_dir.glob("*.json")) if curves_dir.is_dir() else []:
        entry = json.loads(path.read_text())
        if entry.get("setup") == setup_.key():
            states[path.stem] = entry
    return {"setup": setup_.key(), "states": states}


def save_entry(curves_dir: Path, sid: str, entry: dict) -> None:
    curves_dir.mkdir(parents=True, exist_ok=True)
    path = curves_dir / f"{sid}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entry, indent=1) + "\n")
    os.replace(tmp, path)


def stale_states(cached: dict[str, dict], info: dict[str, dict]) -> list[str]:
    """The cached states of the runs trained now that are not the states trained now: the
    validation loss recorded with their curves differs (beyond float noise), or (a plateau
    setup) the run kept another epoch. Training is exact on one machine, not across CPUs
    (docs/performance.md 6b, "Ten more seeds"), so a cache made elsewhere must not be
    extended, or measured further, from states retrained here."""

    def run(entry: dict) -> tuple:
        return entry["optimizer"], entry["seed"], entry["running_lr"]

    runs_now = {run(meta) for meta in info.values()}
    return sorted(
        sid
        for sid, old in cached.items()
        if run(old) in runs_now
        and (
            (meta := info.get(sid)) is None
            or not math.isclose(old["val_loss"], meta["val_loss"], rel_tol=1e-4)
        )
    )


def stale_message(stale: Sequence[str], curves_dir: Path) -> str:
    """One line naming the ``stale_states`` of ``curves_dir``."""
    named = ", ".join(stale[:3]) + (", ..." if len(stale) > 3 else "")
    return (
        f"error: {len(stale)} state(s) trained here differ from the ones {curves_dir} was"
        f" measured from ({named}): the cache comes from another machine"
    )


def compute(args: Any, setup_: Setup, curves_dir: Path, states_dir: Path) -> None:
    import torch

    from trainables.device import select_device
    from trainables.lr import TrainingSnapshot

    torch.set_num_threads(args.threads)
    device = select_device("cpu", cpus_assigned=args.threads)
    splits = load_setup_splits(setup_, args.data_dir)
    cached = load_curves(curves_dir, setup_)["states"]
    info = make_states(setup_, splits, device, states_dir, args.shard)
    stale = stale_states(cached, info)
    if stale:
        raise SystemExit(
            stale_message(stale, curves_dir)
            + f"; read it with --analyse-only, or move {curves_dir} aside to measure it again here"
        )
    entries = {
        sid: cached.get(sid) or {"setup": setup_.key(), **meta, "oracle": {}, "range_tests": {}}
        for sid, meta in info.items()
    }
    # the first stream for every state, then each replica stream in turn (the noise, and the
    # mean oracle): a run cut short still has every state's oracle and whole streams
    for replica in range(setup_.streams):
        for sid, entry in entries.items():
            if replica > 0 and entry["seed"] not in setup_.replica_seeds:
                continue
            t0 = time.perf_counter()
            trial = make_trial(
                setup_, splits, device, entry["optimizer"], entry["running_lr"], entry["seed"]
            )
            load_state(trial, states_dir, sid)
            epoch = entry["epoch"]
            save = functools.partial(save_entry, curves_dir, sid, entry)
            if replica == 0 and (
                args.fresh_range_tests
                or any(probe_name(m, s) not in entry["range_tests"] for m, s in setup_.probes)
            ):
                entry["range_tests"] = run_probes(trial, epoch, setup_.probes)
                save()
            snap = TrainingSnapshot.capture(trial.model, trial.optimizer)
            points = entry["oracle"].setdefault(str(replica), {})
            train = functools.partial(
                train_offset, trial, snap, epoch, replica, entry["running_lr"], device
            )
            if replica == 0:
                coarse, refine = setup_.coarse, setup_.refine
            else:  # around the first stream's best, and the running LR itself
                first = entry["oracle"]["0"]
                centre = {best_offset(first, h) for h in HORIZONS} - {None}
                coarse = tuple(sorted({0.0} | {c + d for c in centre for d in (-0.25, 0.0, 0.25)}))
                refine = setup_.refine[-1:]
            run_grid(points, train, coarse, refine, save)
            if replica == 0:  # the LRs the policy applies (its defaults and others), measured
                curves = [entry["range_tests"]["held_out_default"]]
                if UNSETTLED_PROBE in entry["range_tests"]:
                    curves.append(entry["range_tests"][UNSETTLED_PROBE])
                for curve, settings in itertools.product(curves, [{}, *policy_settings()]):
                    _, applied = our_pick(curve, None, entry["running_lr"], settings)
                    key = lr_key(math.log10(applied / entry["running_lr"]))
                    if key not in points:
                        points[key] = train(float(key))
                        save()
            snap.restore()
            print(
                f"{sid} stream {replica}: {len(points)} oracle runs, "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per process (default 1: on a shared machine 2 threads were 3-6x"
        " slower than 1; run two --shard processes instead)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="I/N",
        help="compute only every N-th training run from the I-th (e.g. 0/2 and 1/2 in parallel)",
    )
    parser.add_argument(
        "--setup",
        choices=sorted(SETUPS),
        default="full",
        help="full: 24 states at well-set LRs, four data streams (default); misset: 8 states"
        " whose running LR is 10x too low or 5-10x too high, one stream; misset-val: the same"
        " on 16 more seeds (2-5), to validate what misset suggested; misset-test: 16 more"
        " (seeds 6-9), trained after the policy settings scored on them were fixed; full-test:"
        " the full population on seeds 4-5 (12 states, two streams), trained after every"
        " default was fixed; full-test2 (seeds 6-7) and misset-test2 (seeds 10-11): the states"
        " that decided whether the pick is moved toward an anchor; full-test3 (seeds 8-9): the"
        " states that decide between midpoint and steepest; full-8k (seeds 10-11): the well-set"
        " population on 8,000 training images, another data size; full-wd (seeds 12-13): the"
        " well-set population with weight decay 5e-4; full-resnet8 (seeds 14-15): the well-set"
        " population on another model, He et al.'s CIFAR ResNet-8; full-resnet8-test (seeds 16-17):"
        " fresh ResNet-8 states, each range test with and without settling BatchNorm first;"
        " full-plateau (seeds 18-23): seed_cnn on 5,000 images, each run's state where the"
        " policy's detector (patience 3) first fires, where the policy runs its first test;"
        " full-plateau-test (seeds 24-29): the same on fresh seeds; full-test4 (seeds 30-31):"
        " fresh well-set states for the rule on the curve's level (benchmarks/level_rule.py);"
        " misset-test3 (seeds 12-13): fresh badly set states for that rule's gated form",
    )
    parser.add_argument(
        "--analyse-only", action="store_true", help="use the cached curves; train nothing"
    )
    parser.add_argument(
        "--fresh-range-tests", action="store_true", help="rerun the (cheap) range tests"
    )
    args = parser.parse_args()
    setup_ = QUICK if args.quick else SETUPS[args.setup]
    out = Path(args.out) if args.out else C.RESULTS_DIR / f"{setup_.name}.json"
    curves_dir = out.with_name(f"{out.stem}_curves")
    states_dir = out.with_name(f".{out.stem}_states")
    t0 = time.perf_counter()
    if not args.analyse_only:
        compute(args, setup_, curves_dir, states_dir)
        if args.shard[1] > 1:
            print("shard done; run --analyse-only once every shard has finished", flush=True)
            return 0
    doc = load_curves(curves_dir, setup_)
    if not doc["states"]:
        print(f"no cached curves of this setup in {curves_dir}", flush=True)
        return 1
    noise = None
    if setup_.noise_from:  # one stream measures no noise: take the full oracle's
        source = out.with_name(f"{setup_.noise_from}.json")
        if not source.is_file():
            print(
                f"{source} is missing: this setup takes its oracle noise from it;"
                " run the full oracle (or its --analyse-only) first",
                flush=True,
            )
            return 1
        noise = json.loads(source.read_text())["main"]["oracle_noise"]
    results = {probe: analyse(doc, probe, noise) for probe in _probes(doc)}
    main_result = results["held_out_default"]
    for result in results.values():
        print(table(result) + "\n", flush=True)
    shown = [  # a fallback or a limit changes the applied LR, never the pick: no panels
        n
        for n in main_result["rules"]
        if not n.endswith("_slide") and not n.startswith(("baseline", "fallback", "policy_"))
    ]
    plot_scatter(main_result, out.with_name(f"{out.stem}_scatter_2ep.png"), shown, "2ep")
    plot_scatter(main_result, out.with_name(f"{out.stem}_scatter_half.png"), shown, "half")
    if main_result["pooled_states"]:
        pooled = {
            "rows": main_result["pooled_rows"],
            "rules": main_result["rules_vs_pooled_oracle"],
        }
        label = f"mean oracle of {main_result['streams']} streams"
        for h in ("2ep", "half"):
            path = out.with_name(f"{out.stem}_scatter_pooled_{h}.png")
            plot_scatter(pooled, path, shown, h, label)
    C.write_result(
        out.stem,
        {
            "setup": setup_.key(),
            "seconds": time.perf_counter() - t0,
            "main": {k: v for k, v in main_result.items() if k not in ("rows", "pooled_rows")},
            "rows": main_result["rows"],
            "other_curves": {
                probe: {k: v for k, v in r.items() if k not in ("rows", "pooled_rows")}
                for probe, r in results.items()
                if probe != "held_out_default"
            },
        },
        str(out),
    )
    return 0


def _shard(text: str) -> tuple[int, int]:
    i, n = (int(v) for v in text.split("/"))
    if not 0 <= i < n:
        raise ValueError(text)
    return i, n


def _probes(doc: dict) -> list[str]:
    names: set[str] = set()
    for entry in doc["states"].values():
        names.update(entry["range_tests"])
    return sorted(names)


if __name__ == "__main__":
    raise SystemExit(main())
