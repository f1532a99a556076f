"""How long `python -m sweep run` takes to exit after its last line, with and without the
interpreter's teardown (sweep/entry.py).

Two ways to run the same smoke sweep (`run --smoke-test`, a fresh folder each time), interleaved:

* entry: ``python -m sweep run ...``, as a user runs it: once ``main()`` returned and every exit
  handler ran, the process ends with ``os._exit``;
* teardown: ``python -c "from sweep.cli import main; sys.exit(main())" run ...``: the same
  work, then CPython's ordinary exit, which frees every module and object of torch,
  torchvision, Ray and MLflow one by one.

Per run: the wall time and the tail, from the last line the command printed to the end of the
process (what a user waits for after "Browse the runs with"). Reported: the medians of both and
the tail saved per run.

    .venv/bin/python benchmarks/cli_exit.py            # ~3 min (3 rounds)
    .venv/bin/python benchmarks/cli_exit.py --quick    # ~1 min (1 round)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

COMMANDS = {
    "entry": [sys.executable, "-m", "sweep"],
    "teardown": [sys.executable, "-c", "import sys; from sweep.cli import main; sys.exit(main())"],
}


def run_once(way: str, data_dir: str) -> tuple[float, float]:
    """(wall seconds, seconds from the last printed line to the process's end) of one smoke run."""
    with tempfile.TemporaryDirectory(prefix="plateau-sweep-cli-exit-") as work:
        env = {**os.environ, "PYTHONPATH": str(C.REPO), "RAY_TMPDIR": work}
        env.pop("RAY_ADDRESS", None)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*COMMANDS[way], "run", "--smoke-test", "--data-dir", data_dir],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        last_line = start
        last_lines: list[str] = []  # shown if the run fails
        for line in proc.stdout:
            last_line = time.perf_counter()
            last_lines = [*last_lines[-5:], line.rstrip()]
        code = proc.wait()
        end = time.perf_counter()
        if code != 0:
            raise SystemExit(f"{way}: exit code {code}:\n" + "\n".join(last_lines))
    return end - start, end - last_line


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 3; quick 1)")
    args = parser.parse_args()
    if not args.data_dir or not Path(args.data_dir).is_dir():
        raise SystemExit(f"no CIFAR-10 at {args.data_dir}: pass --data-dir")
    repeats = args.repeats or (1 if args.quick else 3)

    walls: dict[str, list[float]] = {way: [] for way in COMMANDS}
    tails: dict[str, list[float]] = {way: [] for way in COMMANDS}

    def measure(way: str) -> float:
        wall, tail = run_once(way, args.data_dir)
        walls[way].append(wall)
        tails[way].append(tail)
        return tail

    print("tail (s) from the last printed line to the process's end, per run:", flush=True)
    C.interleave({way: (lambda w=way: measure(w)) for way in COMMANDS}, repeats)
    tail = {way: C.median(v) for way, v in tails.items()}
    wall = {way: C.median(v) for way, v in walls.items()}
    saved = tail["teardown"] - tail["entry"]
    print(
        f"median tail: entry {tail['entry']:.2f} s, teardown {tail['teardown']:.2f} s "
        f"(saved {saved:.2f} s per run)\n"
        f"median wall: entry {wall['entry']:.1f} s, teardown {wall['teardown']:.1f} s "
        f"(ratio {wall['teardown'] / wall['entry']:.3f})",
        flush=True,
    )
    C.write_result(
        "cli_exit",
        {
            "measures": "exit of `python -m sweep run --smoke-test`: os._exit after the exit "
            "handlers (entry) against CPython's ordinary teardown",
            "quick": args.quick,
            "settings": {"repeats": repeats, "command": "run --smoke-test"},
            "tail_s": {way: C.summary(v) for way, v in tails.items()},
            "wall_s": {way: C.summary(v) for way, v in walls.items()},
            "headline": {
                "tail_saved_s": round(saved, 3),
                "wall_ratio_teardown_over_entry": round(wall["teardown"] / wall["entry"], 4),
            },
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
