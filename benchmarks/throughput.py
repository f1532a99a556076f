"""Training throughput of the trainable's step against plain PyTorch, on CPU.

* trainable: ``trainables.loop.Trial.train_epoch`` -- the exact code a trial runs per epoch
  (shuffle, crop/flip augmentation, normalise, LR policy, forward, loss, backward, Adam step,
  loss/accuracy accumulation), with the ``DeviceSetup`` that ``select_device("cpu",
  cpus_assigned=T)`` gives a Ray trial with T CPUs.
* plain: the shortest PyTorch loop over pre-normalised float batches (no augmentation, no
  bookkeeping): ``model(x)``, cross-entropy, ``zero_grad``, ``backward``, Adam ``step``; in
  contiguous and channels_last memory format. Optionally ``torch.compile`` (``--compile``).

seed_cnn, batch 50 (the default spec), Adam lr 1e-3, thread counts 1 and 2 (``--threads``).
Every variant is measured once per round, rounds interleaved; images/s medians. The ratio is
trainable / best plain variant at the same thread count (a trial with T CPUs runs T threads).
Target: >= 0.9.

    .venv/bin/python benchmarks/throughput.py            # ~2-3 min
    .venv/bin/python benchmarks/throughput.py --quick    # < 1 min sanity run
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import _common as C
import torch
import torch.nn.functional as F

TARGET = 0.9
#: CPU seconds per image of each measurement, by variant (beside the wall-clock images/s):
#: with one thread this is the work itself, less disturbed by other load than wall time.
CPU_S_PER_IMAGE: dict[str, list[float]] = {}


def plain_variant(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    channels_last: bool,
    threads: int,
    key: str,
    compile_model: bool = False,
) -> Callable[[], float]:
    from trainables.models import build_model

    torch.manual_seed(0)
    model = build_model("seed_cnn")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    xs = x.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd: Any = torch.compile(model) if compile_model else model
    steps = len(x) // batch_size

    def run() -> float:
        torch.set_num_threads(threads)
        model.train()
        c0 = time.process_time()
        start = time.perf_counter()
        for i in range(steps):
            xb = xs[i * batch_size : (i + 1) * batch_size]
            yb = y[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(fwd(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        wall = time.perf_counter() - start
        CPU_S_PER_IMAGE.setdefault(key, []).append(
            (time.process_time() - c0) / (steps * batch_size)
        )
        return steps * batch_size / wall

    return run


def trainable_variant(
    splits: Any, *, batch_size: int, threads: int, key: str, channels_last: bool = True
) -> Callable[[], float]:
    from trainables.config import TrialConfig
    from trainables.device import select_device
    from trainables.loop import Trial

    setup = select_device("cpu", cpus_assigned=threads, channels_last_cpu=channels_last)
    cfg = TrialConfig.model_validate(
        {"model": "seed_cnn", "optimizer": "adam", "lr": 1e-3, "batch_size": batch_size}
    )
    trial = Trial(cfg, splits, setup)
    epoch = [0]

    def run() -> float:
        torch.set_num_threads(setup.num_threads)
        epoch[0] += 1
        c0 = time.process_time()
        start = time.perf_counter()
        trial.train_epoch(epoch[0])
        wall = time.perf_counter() - start
        images = trial.steps_per_epoch * batch_size
        CPU_S_PER_IMAGE.setdefault(key, []).append((time.process_time() - c0) / images)
        return images / wall

    return run


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="images per measurement")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--threads",
        default="1",
        help="comma list of thread counts (default 1: a 1-CPU trial; try 1,2 on an idle machine)",
    )
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument(
        "--compile", action="store_true", help="also try torch.compile (slow to compile on CPU)"
    )
    args = parser.parse_args()
    # short measurements, many rounds: on a shared machine the load drifts within seconds
    n = args.images or (400 if args.quick else 600)
    repeats = args.repeats or (3 if args.quick else 15)
    thread_counts = [int(t) for t in args.threads.split(",")]
    bs = args.batch_size

    from trainables.augment import normalize
    from trainables.data import load_splits

    splits = load_splits(args.data_dir, train_subset=n, val_subset=100, test_subset=100)
    x_float = normalize(splits.train_x, channels_last=False)
    y = splits.train_y

    variants: dict[str, Callable[[], float]] = {}
    notes: list[str] = []
    for t in thread_counts:
        variants[f"trainable_t{t}"] = trainable_variant(
            splits, batch_size=bs, threads=t, key=f"trainable_t{t}"
        )
        # the same trainable in contiguous format (select_device(channels_last_cpu=False))
        variants[f"trainable_contiguous_t{t}"] = trainable_variant(
            splits,
            batch_size=bs,
            threads=t,
            key=f"trainable_contiguous_t{t}",
            channels_last=False,
        )
        for cl in (False, True):
            name = f"plain_{'channels_last' if cl else 'contiguous'}_t{t}"
            variants[name] = plain_variant(
                x_float, y, batch_size=bs, channels_last=cl, threads=t, key=name
            )
        if args.compile:
            name = f"plain_compiled_contiguous_t{t}"
            fn = plain_variant(
                x_float,
                y,
                batch_size=bs,
                channels_last=False,
                threads=t,
                key=name,
                compile_model=True,
            )
            try:
                seconds, _ = C.timed(fn)  # the first call compiles
                notes.append(f"{name}: first call (compile) took {seconds:.1f} s")
                variants[name] = fn
            except Exception as exc:
                notes.append(f"{name}: torch.compile failed: {type(exc).__name__}: {exc}"[:300])
    if not args.compile:
        notes.append("torch.compile not tried (pass --compile)")

    print(f"seed_cnn, batch {bs}, {n} images per measurement, {repeats} rounds", flush=True)
    for fn in variants.values():  # warm-up: allocator, oneDNN primitive caches
        fn()
    CPU_S_PER_IMAGE.clear()
    runs = C.interleave(variants, repeats)
    cpu_ips = {k: 1.0 / C.median(v) for k, v in CPU_S_PER_IMAGE.items()}  # images per CPU-s
    med = {name: C.median(v) for name, v in runs.items()}

    by_threads: dict[str, Any] = {}
    for t in thread_counts:
        plain = {k: v for k, v in med.items() if k.startswith("plain") and k.endswith(f"_t{t}")}
        best = max(plain, key=plain.__getitem__)
        ratio = med[f"trainable_t{t}"] / plain[best]
        # the same ratio within each round (both measured seconds apart), then the median
        paired = C.median([a / b for a, b in zip(runs[f"trainable_t{t}"], runs[best], strict=True)])
        paired_contig = C.median(
            [a / b for a, b in zip(runs[f"trainable_contiguous_t{t}"], runs[best], strict=True)]
        )
        best_cpu = max(plain, key=cpu_ips.__getitem__)
        ratio_cpu = cpu_ips[f"trainable_t{t}"] / cpu_ips[best_cpu]
        by_threads[str(t)] = {
            "cpu_time_images_per_cpu_s": {
                k: round(v, 1) for k, v in cpu_ips.items() if k.endswith(f"_t{t}")
            },
            "cpu_time_best_plain": best_cpu,
            "cpu_time_ratio": round(ratio_cpu, 3),
            "cpu_time_trainable_contiguous_ratio": round(
                cpu_ips[f"trainable_contiguous_t{t}"] / cpu_ips[best_cpu], 3
            ),
            "trainable_images_per_s": round(med[f"trainable_t{t}"], 1),
            "trainable_contiguous_images_per_s": round(med[f"trainable_contiguous_t{t}"], 1),
            "trainable_contiguous_vs_best_plain": round(
                med[f"trainable_contiguous_t{t}"] / plain[best], 3
            ),
            "best_plain": best,
            "best_plain_images_per_s": round(plain[best], 1),
            "ratio": round(ratio, 3),
            "ratio_paired_per_round_median": round(paired, 3),
            "trainable_contiguous_ratio_paired": round(paired_contig, 3),
            "target": TARGET,
            "met": C.met(ratio, TARGET),
        }
        print(
            f"{t} thread(s): trainable {med[f'trainable_t{t}']:,.0f} images/s, best plain "
            f"({best}) {plain[best]:,.0f} -> {ratio:.3f} {C.verdict(ratio, TARGET)}; "
            f"per-round paired median {paired:.3f}; the trainable in contiguous format: "
            f"{med[f'trainable_contiguous_t{t}']:,.0f} images/s, paired {paired_contig:.3f}",
            flush=True,
        )
        print(
            f"  in images per CPU-second: trainable {cpu_ips[f'trainable_t{t}']:,.0f}, best plain "
            f"({best_cpu}) {cpu_ips[best_cpu]:,.0f} -> {ratio_cpu:.3f}; trainable "
            f"contiguous {cpu_ips[f'trainable_contiguous_t{t}']:,.0f}",
            flush=True,
        )
    overall_best = max((k for k in med if k.startswith("plain")), key=med.__getitem__, default=None)
    for line in notes:
        print(f"note: {line}")
    C.write_result(
        "throughput",
        {
            "measures": "seed_cnn CPU training throughput, trainable vs plain",
            "quick": args.quick,
            "settings": {
                "model": "seed_cnn",
                "batch_size": bs,
                "images_per_measurement": n,
                "repeats": repeats,
                "thread_counts": thread_counts,
                "trainable": "Trial.train_epoch with select_device('cpu', cpus_assigned=T) "
                "(augmentation on, channels_last on CPU by default)",
                "plain": "pre-normalised batches, forward/CE/zero_grad/backward/Adam.step",
            },
            "images_per_s": {k: C.summary(v) for k, v in runs.items()},
            "by_threads": by_threads,
            "best_plain_overall": overall_best,
            "notes": notes,
            "headline": by_threads[str(thread_counts[0])],
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
