"""The cost of one LR range test as a fraction of one training epoch.

Settings of the default spec: seed_cnn, Adam, batch 50, one CPU thread (a 1-CPU Ray trial). An
epoch is the full training split, 40,000 images = 800 steps of 50. Timing a whole 40k epoch
several times would take minutes, so the epoch is timed on a subset with the trainable's own
``Trial.train_epoch`` (augmentation and bookkeeping included, validation not) and scaled by
steps: ``epoch_s = 800 x (seconds per training step)``.

Measured in one run, interleaved round by round, medians:

* train step: ``Trial.train_epoch`` on the subset, divided by its steps.
* range test, default settings: the trial's own probe (``Trial.probe``: snapshot, the policy's
  measure, restore) with ``RangeTestOnPlateauLR``'s defaults (min_lr 1e-6, max_lr 1.0) and the
  number of steps ``probe_steps()`` gives for an 800-step epoch (epoch_fraction 0.1 -> 80). At
  max_lr 1.0 it usually stops early on divergence, so the same probe is also run
  full-length with max_lr 1e-3 (no divergence): that one is the headline, an upper bound.
* snapshot: ``TrainingSnapshot.capture`` and ``.restore`` of the trial's model and optimizer,
  timed separately.
* original approach (a whole epoch per test): the classic test (loss of the trained batch, no
  held-out batch) run for the same 80 steps; its per-step cost x 800 plus its own
  snapshot+restore gives the cost of a one-epoch test.

* the same full-length probe with ``settle_batches=0``: on a model with BatchNorm (``--model
  resnet8``) the default test first recomputes the running statistics from 10 batches
  (forward passes); the ratio of the two is that settling's cost. On seed_cnn they are the
  same test.

Targets: range test <= 0.15 of an epoch; snapshot + restore <= 1% of an epoch.

    .venv/bin/python benchmarks/range_test_cost.py            # ~1-2 min
    .venv/bin/python benchmarks/range_test_cost.py --quick    # < 1 min sanity run
    .venv/bin/python benchmarks/range_test_cost.py --model resnet8 \
        --out benchmarks/results/range_test_cost_resnet8.json
"""

from __future__ import annotations

import time
from typing import Any

import _common as C
import torch.nn.functional as F

TARGET_TEST = 0.15
TARGET_SNAPSHOT = 0.01
FULL_TRAIN = 40_000
BATCH = 50


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="subset for the epoch timing")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--model", default="seed_cnn", help="a model name (default seed_cnn)")
    args = parser.parse_args()
    n = args.images or (1000 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)

    from trainables.config import TrialConfig
    from trainables.data import load_splits
    from trainables.device import select_device
    from trainables.loop import Trial, seeded_generator, stream_seed
    from trainables.lr import RangeTestOnPlateauLR, TrainingSnapshot, run_range_test

    setup = select_device("cpu", cpus_assigned=1)
    splits = load_splits(args.data_dir, train_subset=n, val_subset=100, test_subset=100)
    cfg = TrialConfig.model_validate(
        {
            "model": args.model,
            "optimizer": "adam",
            "lr": 1e-3,
            "batch_size": BATCH,
            "policy": "range_test_on_plateau",
        }
    )
    trial = Trial(cfg, splits, setup)
    full_steps = FULL_TRAIN // BATCH
    full_policy = RangeTestOnPlateauLR(base_lr=1e-3, steps_per_epoch=full_steps)
    probe_steps = full_policy.probe_steps()
    min_lr, max_lr = full_policy.min_lr, full_policy.max_lr
    measure = getattr(full_policy, "measure", "train_batch (no 'measure' option in this tree)")
    print(
        f"{args.model}, batch {BATCH}, 1 thread; epoch = {full_steps} steps ({FULL_TRAIN} images), "
        f"range test = {probe_steps} steps (policy defaults; measure: {measure})",
        flush=True,
    )

    epoch = [0]
    stats: dict[str, list[float]] = {
        "train_step_s": [],
        "test_default_s": [],
        "test_full_s": [],
        "test_full_unsettled_s": [],
        "test_classic_s": [],
        "capture_s": [],
        "restore_s": [],
    }
    info: dict[str, Any] = {}
    # CPU seconds of this process beside the wall seconds: with one thread it is the work
    # itself, much less disturbed by other processes on a shared machine than wall time
    cpu: dict[str, list[float]] = {"train_step_s": [], "test_full_s": [], "test_classic_s": []}

    def train_step() -> float:
        epoch[0] += 1
        start, c0 = time.perf_counter(), time.process_time()
        trial.train_epoch(epoch[0])
        cpu["train_step_s"].append((time.process_time() - c0) / trial.steps_per_epoch)
        return (time.perf_counter() - start) / trial.steps_per_epoch

    def probe(hi: float, key: str, **settle: int) -> float:
        start, c0 = time.perf_counter(), time.process_time()
        result = trial.probe(epoch[0])(min_lr, hi, probe_steps, "held_out", **settle)
        seconds = time.perf_counter() - start
        if key == "full":
            cpu["test_full_s"].append(time.process_time() - c0)
        info[key] = {"steps_run": result.num_steps, "stop_reason": result.stop_reason}
        return seconds

    def classic() -> float:
        gen = seeded_generator(stream_seed(cfg.seed, epoch[0], 1, 99))
        start, c0 = time.perf_counter(), time.process_time()
        result = run_range_test(
            trial.model,
            trial.optimizer,
            F.cross_entropy,
            trial.train_pipe.random_batches(gen),
            min_lr=min_lr,
            max_lr=1e-3,
            num_steps=probe_steps,
        )
        seconds = time.perf_counter() - start
        cpu["test_classic_s"].append(time.process_time() - c0)
        info["classic"] = {"steps_run": result.num_steps, "stop_reason": result.stop_reason}
        return seconds

    def snapshot_once() -> None:
        reps = 10
        cap, res = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            snap = TrainingSnapshot.capture(trial.model, trial.optimizer)
            t1 = time.perf_counter()
            snap.restore()
            t2 = time.perf_counter()
            cap.append(t1 - t0)
            res.append(t2 - t1)
        stats["capture_s"].append(C.median(cap))
        stats["restore_s"].append(C.median(res))
        info["snapshot_mib"] = round(snap.nbytes / 2**20, 2)

    train_step()  # warm-up; also gives Adam its state, as a trial in mid-run has
    for r in range(repeats):
        order = ["train", "default", "full", "unsettled", "classic", "snap"]
        if r % 2:
            order.reverse()
        for what in order:
            if what == "train":
                stats["train_step_s"].append(train_step())
            elif what == "default":
                stats["test_default_s"].append(probe(max_lr, "default"))
            elif what == "full":
                stats["test_full_s"].append(probe(1e-3, "full"))
            elif what == "unsettled":
                stats["test_full_unsettled_s"].append(probe(1e-3, "unsettled", settle_batches=0))
            elif what == "classic":
                stats["test_classic_s"].append(classic())
            else:
                snapshot_once()
        print(
            f"  round {r + 1}/{repeats}: step {stats['train_step_s'][-1] * 1e3:.1f} ms, "
            f"test default {stats['test_default_s'][-1]:.2f} s "
            f"({info['default']['steps_run']} steps, {info['default']['stop_reason']}), "
            f"full {stats['test_full_s'][-1]:.2f} s, classic {stats['test_classic_s'][-1]:.2f} s, "
            f"capture {stats['capture_s'][-1] * 1e3:.2f} ms, "
            f"restore {stats['restore_s'][-1] * 1e3:.2f} ms",
            flush=True,
        )

    med = {k: C.median(v) for k, v in stats.items()}
    epoch_s = full_steps * med["train_step_s"]
    snap_s = med["capture_s"] + med["restore_s"]
    frac_full = med["test_full_s"] / epoch_s
    frac_default = med["test_default_s"] / epoch_s
    frac_snap = snap_s / epoch_s
    classic_step_s = max(med["test_classic_s"] - snap_s, 0.0) / probe_steps
    original_s = snap_s + full_steps * classic_step_s
    frac_original = original_s / epoch_s
    cmed = {k: C.median(v) for k, v in cpu.items()}
    cpu_epoch_s = full_steps * cmed["train_step_s"]
    cpu_frac_full = cmed["test_full_s"] / cpu_epoch_s
    cpu_frac_original = (
        snap_s + full_steps * max(cmed["test_classic_s"] - snap_s, 0.0) / probe_steps
    ) / cpu_epoch_s
    print(
        f"epoch ({full_steps} steps, scaled from {trial.steps_per_epoch}-step subset epochs): "
        f"{epoch_s:.1f} s",
        flush=True,
    )
    print(
        f"range test, {probe_steps} steps full length: {med['test_full_s']:.2f} s = "
        f"{frac_full:.3f} epoch {C.verdict(frac_full, TARGET_TEST, False)}",
        flush=True,
    )
    print(
        f"  in CPU seconds of this process (less disturbed by other load): epoch "
        f"{cpu_epoch_s:.1f} s, full-length test {cmed['test_full_s']:.2f} s = "
        f"{cpu_frac_full:.3f} epoch {C.verdict(cpu_frac_full, TARGET_TEST, False)}",
        flush=True,
    )
    print(
        f"range test, defaults (max_lr {max_lr:g}, {info['default']['stop_reason']} after "
        f"{info['default']['steps_run']} steps): {med['test_default_s']:.2f} s = "
        f"{frac_default:.3f} epoch",
        flush=True,
    )
    settle_ratio = med["test_full_s"] / med["test_full_unsettled_s"]
    print(
        f"  full length without settling BatchNorm: {med['test_full_unsettled_s']:.2f} s; "
        f"with / without: {settle_ratio:.2f}x",
        flush=True,
    )
    print(
        f"snapshot capture {med['capture_s'] * 1e3:.2f} ms + restore {med['restore_s'] * 1e3:.2f}"
        f" ms = {frac_snap * 100:.3f}% of an epoch "
        f"{'MET' if frac_snap <= TARGET_SNAPSHOT else 'MISSED'} (target <= 1%)",
        flush=True,
    )
    print(
        f"original approach (one epoch per test): {original_s:.1f} s = {frac_original:.3f} epoch "
        f"from the classic test's per-step cost (by construction: 1 + {frac_snap:.5f})",
        flush=True,
    )
    C.write_result(
        "range_test_cost",
        {
            "measures": "range-test cost as a fraction of an epoch",
            "quick": args.quick,
            "settings": {
                "model": args.model,
                "optimizer": "adam",
                "batch_size": BATCH,
                "threads": 1,
                "epoch_images": FULL_TRAIN,
                "epoch_steps": full_steps,
                "subset_images_timed": n,
                "subset_steps": trial.steps_per_epoch,
                "probe_steps": probe_steps,
                "min_lr": min_lr,
                "max_lr_default": max_lr,
                "max_lr_full_length": 1e-3,
                "measure": str(measure),
                "repeats": repeats,
                "epoch_time_method": "800 x median seconds per step of Trial.train_epoch on the "
                "subset (augmentation included, validation excluded)",
                "original_method": "snapshot+restore + 800 x per-step cost of the classic test "
                "(train-batch loss, no held-out batch)",
            },
            "seconds": {k: C.summary(v) for k, v in stats.items()},
            "cpu_seconds": {k: C.summary(v) for k, v in cpu.items()},
            "cpu_epoch_s": round(cpu_epoch_s, 3),
            "fraction_of_epoch_cpu_time": {
                "range_test_full_length": round(cpu_frac_full, 4),
                "original_one_epoch_test": round(cpu_frac_original, 4),
            },
            "runs": info,
            "epoch_s": round(epoch_s, 3),
            "fraction_of_epoch": {
                "range_test_full_length": round(frac_full, 4),
                "range_test_default_max_lr": round(frac_default, 4),
                "range_test_full_length_unsettled": round(
                    med["test_full_unsettled_s"] / epoch_s, 4
                ),
                "snapshot_capture_plus_restore": round(frac_snap, 6),
                "original_one_epoch_test": round(frac_original, 4),
                "original_one_epoch_test_by_construction": round(1.0 + frac_snap, 6),
            },
            "settle_cost_ratio": round(settle_ratio, 3),
            "targets": {"range_test": TARGET_TEST, "snapshot": TARGET_SNAPSHOT},
            "met": {
                "range_test": C.met(frac_full, TARGET_TEST, False),
                "range_test_cpu_time": C.met(cpu_frac_full, TARGET_TEST, False),
                "snapshot": C.met(frac_snap, TARGET_SNAPSHOT, False),
            },
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
