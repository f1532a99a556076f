"""GPU throughput, input pipeline and trials sharing one GPU (CUDA only).

UNTESTED ON A GPU: written without access to one. On a machine without CUDA it prints that no
GPU is present, writes benchmarks/results/gpu.json saying so, and exits 0.

With CUDA (aimed at < 5 minutes on one GPU):

1. models: seed_cnn and resnet18 training steps (forward, cross-entropy, backward, Adam step)
   on device-resident batches of 128 and 512, fp32 (TF32 matmuls/convs allowed, as
   ``select_device`` sets them) vs bf16 autocast, contiguous vs channels_last; images/s,
   every configuration once per round, rounds interleaved, medians.
2. input pipeline: ``BatchPipeline`` with the uint8 images on the GPU (crop/flip/normalise
   on the GPU) against torchvision's ``DataLoader`` (PIL transforms, ``num_workers=0``, one
   CPU thread, batches then copied to the GPU); images/s of one pass each, interleaved.
3. trials sharing one GPU: 1, 4 and 8 concurrent processes on the one GPU, each running the
   trainable's own epoch loop (``trainables.loop.Trial.train_epoch``, seed_cnn, batch 50 as
   in ``sweep/specs/cifar10_full.yaml``); aggregate training images/s over the window in
   which all of them train (they start together after a warm-up epoch). Separate processes
   stand in for Ray trials with ``resources: {gpu: 1/N}`` (what Ray does: N worker processes,
   one CUDA context each), without Ray's start-up in the measurement.

CIFAR-10 is used when found (--data-dir / $PLATEAU_SWEEP_DATA_DIR / ../shared/data); otherwise
random uint8 images of the same shape (the speed is the same; the JSON says which).

    .venv/bin/python benchmarks/gpu.py            # < 5 min on one GPU
    .venv/bin/python benchmarks/gpu.py --quick    # < 1 min
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

NO_GPU = "no GPU: CUDA is not available on this machine; nothing measured (exit 0)"
DEADLINE_S = 270.0  # stop starting new sections after this (aim: under 5 minutes in all)


def load_images(data_dir: str | None, n: int) -> tuple[Any, Any, str]:
    """(uint8 [n,3,32,32], int64 [n], source) on the CPU: CIFAR-10 if found, else random."""
    import torch

    try:
        from trainables.data import load_splits

        if data_dir is None:
            raise FileNotFoundError("no data folder given")
        splits = load_splits(
            data_dir, train_subset=n, val_subset=100, test_subset=100, download=False
        )
        return splits.train_x, splits.train_y, f"CIFAR-10 from {data_dir}"
    except Exception as exc:
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        return x, y, f"random uint8 images (CIFAR-10 not loaded: {type(exc).__name__})"


# -- 1. model throughput -------------------------------------------------------------------------
def model_section(quick: bool, rounds: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from trainables.device import select_device
    from trainables.models import build_model

    setup = select_device("cuda")  # cudnn.benchmark, TF32, bf16 support check
    dev = setup.device
    models = ["seed_cnn"] if quick else ["seed_cnn", "resnet18"]
    batches = [128] if quick else [128, 512]
    dtypes = ["fp32", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32"]
    steps = 10 if quick else 20
    configs: dict[str, Any] = {}
    for name in models:
        for bs in batches:
            for dt in dtypes:
                for cl in (False, True):
                    key = f"{name}/b{bs}/{dt}/{'channels_last' if cl else 'contiguous'}"
                    configs[key] = make_step(name, bs, dt, cl, dev, build_model, F)
    # warm-up (cudnn.benchmark autotuning, allocator) once per configuration
    for fn in configs.values():
        fn(3)
    runs = C.interleave({k: (lambda f=fn: f(steps)) for k, fn in configs.items()}, rounds)
    table = {k: round(C.median(v), 1) for k, v in runs.items()}
    best = {}
    for name in models:
        for bs in batches:
            sub = {k: v for k, v in table.items() if k.startswith(f"{name}/b{bs}/")}
            top = max(sub, key=sub.__getitem__)
            best[f"{name}/b{bs}"] = {"best": top, "images_per_s": sub[top]}
            print(f"  {name} batch {bs}: best {top} {sub[top]:,.0f} images/s", flush=True)
    return {"images_per_s": table, "best": best, "steps_per_measurement": steps}


def make_step(name: str, bs: int, dt: str, cl: bool, dev: Any, build_model: Any, F: Any) -> Any:
    import torch

    torch.manual_seed(0)
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = build_model(name).to(dev).to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(bs, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (bs,), device=dev)
    dtype = torch.bfloat16 if dt == "bf16" else None

    def run(steps: int) -> float:
        model.train()
        torch.cuda.synchronize(dev)
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize(dev)
        return steps * bs / (time.perf_counter() - start)

    return run


# -- 2. input pipeline ---------------------------------------------------------------------------
def pipeline_section(x: Any, y: Any, quick: bool, rounds: int) -> dict[str, Any]:
    import torch
    from pipeline import make_torchvision_loader

    from trainables.augment import BatchPipeline

    dev = torch.device("cuda", torch.cuda.current_device())
    bs = 512
    pipe = BatchPipeline(x.to(dev), y.to(dev), batch_size=bs, augment=True, channels_last=True)
    loader = make_torchvision_loader(x, y, bs)
    gen = torch.Generator().manual_seed(0)

    def tensor_pass() -> float:
        torch.cuda.synchronize(dev)
        start = time.perf_counter()
        seen = 0
        for xb, _ in pipe.epoch(gen, drop_last=True):
            seen += len(xb)
        torch.cuda.synchronize(dev)
        return seen / (time.perf_counter() - start)

    def loader_pass() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            start = time.perf_counter()
            seen = 0
            for xb, _ in loader:
                xb = xb.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                seen += len(xb)
            torch.cuda.synchronize(dev)
            return seen / (time.perf_counter() - start)
        finally:
            torch.set_num_threads(threads)

    tensor_pass()
    runs = C.interleave({"tensor_gpu": tensor_pass, "torchvision_cpu": loader_pass}, rounds)
    ratio = C.median(runs["tensor_gpu"]) / C.median(runs["torchvision_cpu"])
    print(f"  pipeline: tensor on GPU / DataLoader = {ratio:.1f}x", flush=True)
    return {
        "batch_size": bs,
        "images_per_pass": len(x),
        "images_per_s": {k: C.summary(v) for k, v in runs.items()},
        "ratio": round(ratio, 2),
    }


# -- 3. trials sharing one GPU -------------------------------------------------------------------
def worker(args: Any) -> int:
    """One 'trial': the trainable's epoch loop on the GPU; waits for the go file to start."""
    import torch

    from trainables.config import TrialConfig
    from trainables.data import DataSplits
    from trainables.device import select_device
    from trainables.loop import Trial

    torch.set_num_threads(2)  # cifar10_full.yaml gives a GPU trial 2 CPUs
    x, y, _ = load_images(args.data_dir, args.worker_images)
    splits = DataSplits(x, y, x[:100], y[:100], x[:100], y[:100])
    setup = select_device("cuda", cpus_assigned=1)
    cfg = TrialConfig.model_validate(
        {"model": "seed_cnn", "optimizer": "adam", "lr": 1e-3, "batch_size": args.worker_batch}
    )
    trial = Trial(cfg, splits, setup)
    trial.train_epoch(1)  # warm-up: CUDA context, cudnn autotuning
    torch.cuda.synchronize()
    folder = Path(args.worker_dir)
    (folder / f"ready_{args.worker_index}").touch()
    go = folder / "go"
    while not go.exists():
        time.sleep(0.01)
    start = time.time()
    images = 0
    for epoch in range(2, 2 + args.worker_epochs):
        trial.train_epoch(epoch)
        images += trial.steps_per_epoch * args.worker_batch
    torch.cuda.synchronize()
    end = time.time()
    (folder / f"result_{args.worker_index}.json").write_text(
        json.dumps({"start": start, "end": end, "images": images})
    )
    return 0


def concurrency_section(data_dir: str | None, quick: bool, deadline: float) -> dict[str, Any]:
    levels = [1, 4] if quick else [1, 4, 8]
    images = 5000 if quick else 10_000
    epochs = 2 if quick else 3
    batch = 50
    out: dict[str, Any] = {
        "model": "seed_cnn",
        "batch_size": batch,
        "images_per_epoch": images,
        "epochs_timed": epochs,
        "by_concurrency": {},
    }
    for n in levels:
        if time.monotonic() > deadline:
            out["skipped_after_deadline"] = n
            break
        with tempfile.TemporaryDirectory(prefix="plateau-gpu-conc-") as tmp:
            procs = []
            for i in range(n):
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker-index",
                    str(i),
                    "--worker-dir",
                    tmp,
                    "--worker-images",
                    str(images),
                    "--worker-epochs",
                    str(epochs),
                    "--worker-batch",
                    str(batch),
                ]
                if data_dir:
                    cmd += ["--data-dir", data_dir]
                procs.append(subprocess.Popen(cmd))
            folder = Path(tmp)
            limit = time.monotonic() + 180
            while len(list(folder.glob("ready_*"))) < n:
                if time.monotonic() > limit or any(p.poll() not in (None, 0) for p in procs):
                    for p in procs:
                        p.kill()
                    raise RuntimeError(f"{n} concurrent trials: a worker failed or hung")
                time.sleep(0.05)
            go_time = time.time()
            (folder / "go").touch()
            for p in procs:
                if p.wait(timeout=300) != 0:
                    raise RuntimeError(f"{n} concurrent trials: a worker exited {p.returncode}")
            results = [json.loads((folder / f"result_{i}.json").read_text()) for i in range(n)]
        total = sum(r["images"] for r in results)
        window = max(r["end"] for r in results) - go_time
        per_trial = [r["images"] / (r["end"] - r["start"]) for r in results]
        out["by_concurrency"][str(n)] = {
            "aggregate_images_per_s": round(total / window, 1),
            "per_trial_images_per_s": [round(v, 1) for v in per_trial],
            "window_s": round(window, 2),
        }
        print(
            f"  {n} trial(s) on one GPU: {total / window:,.0f} images/s in all, "
            f"{C.median(per_trial):,.0f} per trial",
            flush=True,
        )
    return out


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--worker-index", type=int, default=None, help=_hidden())
    parser.add_argument("--worker-dir", default=None, help=_hidden())
    parser.add_argument("--worker-images", type=int, default=10_000, help=_hidden())
    parser.add_argument("--worker-epochs", type=int, default=3, help=_hidden())
    parser.add_argument("--worker-batch", type=int, default=50, help=_hidden())
    args = parser.parse_args()
    if args.worker_index is not None:
        return worker(args)

    import torch

    if not torch.cuda.is_available():
        print(NO_GPU, flush=True)
        C.write_result(
            "gpu",
            {
                "measures": "GPU benchmarks",
                "gpu": False,
                "message": NO_GPU,
                "untested_on_gpu": True,
            },
            args.out,
        )
        return 0

    began = time.monotonic()
    deadline = began + DEADLINE_S
    rounds = args.rounds or (1 if args.quick else 2)
    payload: dict[str, Any] = {
        "measures": "GPU benchmarks",
        "gpu": True,
        "gpu_name": torch.cuda.get_device_name(0),
        "quick": args.quick,
        "rounds": rounds,
        "untested_on_gpu": True,  # written without a GPU; first real run should confirm
    }
    sections: list[tuple[str, Any]] = [
        ("models", lambda: model_section(args.quick, rounds)),
    ]
    x, y, source = load_images(args.data_dir, 5000 if args.quick else 10_000)
    payload["data"] = source
    sections.append(("pipeline", lambda: pipeline_section(x, y, args.quick, rounds)))
    sections.append(
        ("concurrent_trials", lambda: concurrency_section(args.data_dir, args.quick, deadline))
    )
    for name, fn in sections:
        if time.monotonic() > deadline:
            payload[name] = {"skipped": f"over the {DEADLINE_S:.0f} s budget"}
            continue
        print(f"{name}:", flush=True)
        try:
            payload[name] = fn()
        except Exception as exc:  # one broken section must not lose the others
            payload[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
    payload["seconds"] = round(time.monotonic() - began, 1)
    C.write_result("gpu", payload, args.out)
    return 0


def _hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
