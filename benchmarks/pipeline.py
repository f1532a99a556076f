"""The project's tensor input pipeline against torchvision's DataLoader.

Both make the same training batches from the same CIFAR-10 images on one CPU thread
(``torch.set_num_threads(1)``, what a default 1-CPU Ray trial gets):

* tensor: ``trainables.augment.BatchPipeline(augment=True)`` -- shuffle, random crop with
  4-pixel zero padding, horizontal flip, normalise, batch; whole uint8 batches, no PIL.
  ``channels_last`` as the trainable uses it on a CPU (on; see trainables/device.py).
* torchvision: a ``Dataset`` over PIL images made once from the same uint8 arrays, with
  ``RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)``,
  through ``DataLoader(batch_size, shuffle=True, drop_last=True, num_workers=0)``.

One measurement = one full pass (an epoch) over the images; the two are interleaved, repeated,
and the ratio of the median images/s is reported. Target: tensor >= 5x torchvision.

    .venv/bin/python benchmarks/pipeline.py            # ~1-2 min
    .venv/bin/python benchmarks/pipeline.py --quick    # < 1 min sanity run
"""

from __future__ import annotations

import time
from typing import Any

import _common as C
import torch

TARGET = 5.0


def make_torchvision_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Any:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from trainables.augment import CIFAR_MEAN, CIFAR_STD

    images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
    labels = y.tolist()
    tf = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )

    class PILCifar(Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return tf(images[i]), labels[i]

    return DataLoader(
        PILCifar(), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0
    )


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="images per pass")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (A, B) per batch size")
    parser.add_argument("--batch-sizes", default=None, help="comma list (default 50,128)")
    args = parser.parse_args()
    n = args.images or (2000 if args.quick else 10_000)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [int(s) for s in (args.batch_sizes or ("50" if args.quick else "50,128")).split(",")]

    torch.set_num_threads(1)
    from trainables.augment import BatchPipeline
    from trainables.data import load_splits

    splits = load_splits(args.data_dir, train_subset=n, val_subset=100, test_subset=100)
    x, y = splits.train_x, splits.train_y
    print(f"{n} CIFAR-10 training images, 1 thread, {repeats} interleaved rounds", flush=True)

    results: dict[str, Any] = {}
    for bs in sizes:
        pipe = BatchPipeline(x, y, batch_size=bs, augment=True, channels_last=True)
        loader = make_torchvision_loader(x, y, bs)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)

        def tensor_pass(pipe: BatchPipeline = pipe, gen: torch.Generator = gen) -> float:
            start = time.perf_counter()
            seen = 0
            for xb, _ in pipe.epoch(gen, drop_last=True):
                seen += len(xb)
            return seen / (time.perf_counter() - start)

        def torchvision_pass(loader: Any = loader) -> float:
            start = time.perf_counter()
            seen = 0
            for xb, _ in loader:
                seen += len(xb)
            return seen / (time.perf_counter() - start)

        # one untimed pass each: first-call allocations, lazy imports
        tensor_pass()
        torchvision_pass()
        print(f"batch {bs}: images/s", flush=True)
        runs = C.interleave({"tensor": tensor_pass, "torchvision": torchvision_pass}, repeats)
        ratio = C.median(runs["tensor"]) / C.median(runs["torchvision"])
        per_round = [a / b for a, b in zip(runs["tensor"], runs["torchvision"], strict=True)]
        results[str(bs)] = {
            "tensor_images_per_s": C.summary(runs["tensor"]),
            "torchvision_images_per_s": C.summary(runs["torchvision"]),
            "ratio_of_medians": round(ratio, 3),
            "ratio_per_round": [round(r, 3) for r in per_round],
            "target": TARGET,
            "met": C.met(ratio, TARGET),
        }
        print(
            f"batch {bs}: tensor {C.median(runs['tensor']):,.0f} images/s, torchvision "
            f"{C.median(runs['torchvision']):,.0f} images/s -> {ratio:.1f}x "
            f"{C.verdict(ratio, TARGET)}",
            flush=True,
        )

    headline = results[str(sizes[0])]
    C.write_result(
        "pipeline",
        {
            "measures": "input pipeline, tensor vs torchvision DataLoader",
            "quick": args.quick,
            "settings": {
                "images_per_pass": n,
                "repeats": repeats,
                "threads": 1,
                "batch_sizes": sizes,
                "tensor": "BatchPipeline(augment=True, channels_last=True).epoch()",
                "torchvision": "PIL Dataset + RandomCrop(32,4)/RandomHorizontalFlip/ToTensor/"
                "Normalize, DataLoader(shuffle=True, drop_last=True, num_workers=0)",
            },
            "by_batch_size": results,
            "headline": {
                "batch_size": sizes[0],
                "ratio": headline["ratio_of_medians"],
                "target": TARGET,
                "met": headline["met"],
            },
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
