"""Would the held-out measure read a BatchNorm net better with the held-out batch's statistics?

The range test reads its held-out loss in eval mode: BatchNorm normalises with its running
statistics, which follow the weights with momentum 0.1, i.e. about 10 steps behind; in the
default 20-step test over six decades that is three decades of LR. This experiment rereads the
12 ResNet-8 states of ``oracle.py --setup full-resnet8`` with the held-out forward in
batch-statistics mode (each BatchNorm layer normalises by the held-out batch itself and leaves
its running statistics alone; the rest of the model stays in eval mode), keeps their oracle (a
copy of the committed curves), trains the LRs the policy then applies, and scores every rule as
``oracle.py`` does (docs/range_test_oracle.md, "Another model: ResNet-8").

    .venv/bin/python benchmarks/held_out_bn_stats.py   # ~6 min on 2 cores, given the states
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import _common as C

SOURCE = "oracle_resnet8"  # the setup's committed curves (and, if present, its saved states)


def held_out_loss_batch_stats(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    held_out: tuple[Any, Any],
    device: Any,
    make_ctx: Callable[[], AbstractContextManager[Any]],
) -> float:
    """``trainables.lr.range_test._held_out_loss`` with BatchNorm on the batch's own statistics."""
    import torch
    from torch import nn

    inputs, targets = held_out
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:  # training without tracking: batch statistics, running ones untouched
        m.train()
        m.track_running_stats = False
    try:
        with torch.no_grad(), make_ctx():
            return float(loss_fn(model(inputs), targets).float())
    finally:
        for m in norms:
            m.track_running_stats = True
        model.train()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(C.RESULTS_DIR / f"{SOURCE}_bn_batch_stats.json"),
        help="result JSON; its curves go to <stem>_curves next to it (a copy of the"
        f" committed {SOURCE}_curves, then the new range tests and applied LRs)",
    )
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 batches (as oracle.py)")
    args = parser.parse_args()

    import oracle

    import trainables.lr.range_test as range_test

    out = Path(args.out)
    curves, states = out.with_name(f"{out.stem}_curves"), out.with_name(f".{out.stem}_states")
    if not curves.exists():
        shutil.copytree(C.RESULTS_DIR / f"{SOURCE}_curves", curves)
    saved = C.RESULTS_DIR / f".{SOURCE}_states"
    if saved.is_dir() and not states.exists():  # else oracle.py retrains them (exact runs)
        states.symlink_to(saved.resolve(), target_is_directory=True)
    range_test._held_out_loss = held_out_loss_batch_stats  # type: ignore[assignment]
    sys.argv = ["oracle.py", "--setup", "full-resnet8", "--out", str(out), "--fresh-range-tests"]
    if args.data_dir:
        sys.argv += ["--data-dir", args.data_dir]
    return oracle.main()


if __name__ == "__main__":
    sys.exit(main())
