"""``python -m sweep``: run a sweep of LR policies, compare the runs of one, or browse them.

    python -m sweep run [--spec FILE] [--smoke-test] [--resume] [--address ADDR]
                        [--data-dir DIR] [--tracking-uri URI] [--name NAME] [--seeds LIST]
                        [--storage-path PATH]
    python -m sweep compare [NAME ...] [--tracking-uri URI] [--experiment NAME] [--out DIR]
                            [--target-acc X] [--reference POLICY]
    python -m sweep ui [NAME] [--tracking-uri URI] [--port P]

Every user error prints one line, ``error: <problem>; <fix>``, on stderr and exits with 2.
All checks (spec, data folder, storage path, tracking store, sweep to resume) run before Ray
starts, before any MLflow run, before any folder is made -- so a mistake leaves nothing behind.
Ray, MLflow and torch are imported inside the functions that need them: ``--help`` and the
error paths stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from sweep.errors import EXIT_USAGE, PROG, SweepError, one_line, user_error_types
from sweep.preflight import (
    check_storage,
)
from sweep.run_command import print_outputs, resume_command, ui_command
from sweep.store import normalize_tracking_uri, sqlite_db_path

COMMANDS = ("run", "compare", "ui")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one ``error:`` line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise SweepError(message.rstrip("."), f"see {self.prog} --help")


def seed_list(text: str) -> list[int]:
    """``--seeds``: ``2,3``, ``2-6`` (inclusive) or both (``0-2,7``) -> the seeds, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of seeds (integers >= 0 such as 2,3 or a range 2-6)"
            )
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise argparse.ArgumentTypeError(f"{text!r}: the range {part.strip()} is empty")
        seeds.extend(range(low, high + 1))
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Compare learning-rate policies (range_test_on_plateau, cyclical, constant, "
            "reduce_on_plateau) on CIFAR-10 with Ray Tune sweeps tracked in MLflow."
        ),
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run (or resume) a sweep",
        description=(
            "Run a sweep: every policy arm x seed (x search space) as one Ray Tune trial, each "
            "logged as an MLflow child run under one parent run; then print the comparison. "
            "With no options: the built-in default spec on local Ray, MLflow at "
            "sqlite:///mlflow.db and Ray results in ./ray_results (both in the working folder)."
        ),
    )
    run.add_argument(
        "--spec",
        metavar="FILE",
        help="sweep spec (YAML); default: the built-in default spec (sweep/specs/default.yaml)",
    )
    run.add_argument(
        "--smoke-test",
        action="store_true",
        help=(
            "a tiny, fast sweep (under 2 minutes on a laptop CPU): the built-in smoke spec, or "
            "--spec shrunk to <= 3 epochs, 1 seed and 300/200/200 train/val/test images"
        ),
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue an interrupted sweep of the same name and storage path: finished trials "
            "are kept, unfinished and errored ones continue from their latest checkpoint"
        ),
    )
    run.add_argument(
        "--address",
        metavar="ADDR",
        help=(
            "join an existing Ray cluster ('auto', 'HOST:PORT' or 'ray://HOST:10001'); "
            "default: start a local Ray on this machine (no dashboard, loopback only)"
        ),
    )
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        help=(
            "folder with the CIFAR-10 python batches (cifar-10-batches-py) or its parent; "
            "overrides the spec's data.dir; when neither is given the default location is "
            "used and CIFAR-10 is downloaded there if missing"
        ),
    )
    run.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI; overrides the spec's mlflow.tracking_uri "
        "(default sqlite:///mlflow.db in the working folder)",
    )
    run.add_argument(
        "--name",
        metavar="NAME",
        help="sweep name (Ray run name, MLflow experiment unless mlflow.experiment is set); "
        "overrides the spec's name",
    )
    run.add_argument(
        "--seeds",
        metavar="LIST",
        type=seed_list,
        help="the seeds to run, overriding the spec's: a list such as 2,3 or a range such as "
        "2-6 (inclusive). More seeds of a finished sweep: the same options with --seeds of "
        "other seeds and --name NEW, then 'compare OLD NEW' compares them as one",
    )
    run.add_argument(
        "--storage-path",
        metavar="PATH",
        help="where Ray Tune keeps results and checkpoints: a local folder or a URI "
        "(s3://, gs://, ...); overrides the spec's storage_path (default ./ray_results)",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="Ray's and Tune's full output (a line per result and checkpoint, full tracebacks); "
        "by default only the status table and one line per range test, retry or failure",
    )
    run.set_defaults(func=cmd_run)

    compare = sub.add_parser(
        "compare",
        help="compare the policies of a finished (or running) sweep",
        description=(
            "Read a sweep's runs from MLflow and print, per policy, final and best val/test "
            "accuracy and the epochs/images needed to reach the target accuracy, and each policy "
            "paired with a reference seed by seed; the table and plots are also logged to the "
            "sweep's parent run. Several names pool sweeps of one spec run with other seeds."
        ),
    )
    _add_sweep_and_store(compare, several=True)
    compare.add_argument(
        "--experiment",
        metavar="NAME",
        help="MLflow experiment holding the sweep(s) (default: the sweep's own)",
    )
    compare.add_argument(
        "--out",
        metavar="DIR",
        help="write the comparison (table, JSON and plots) to this folder (default: "
        "comparison/ in the sweep's results folder, or ./NAME-comparison when that is not "
        "a local folder, ./A+B-comparison for pooled sweeps); it is also logged to the "
        "sweep's parent run",
    )
    compare.add_argument(
        "--wide",
        action="store_true",
        help="one wide table with every column (images to target, range tests, their LRs; "
        "about 220 columns) instead of tables that fit 120",
    )
    compare.add_argument(
        "--target-acc",
        metavar="X",
        type=float,
        help="validation accuracy in (0, 1] for the 'epochs/images to reach' columns "
        "(default: the target_val_acc of the spec the sweep ran with)",
    )
    compare.add_argument(
        "--reference",
        metavar="POLICY",
        help="the policy every other one is paired with, seed by seed (default: constant)",
    )
    compare.set_defaults(func=cmd_compare)

    ui = sub.add_parser(
        "ui",
        help="open a sweep's runs in the MLflow UI",
        description=(
            "Start the MLflow UI for the sweep's tracking store on 127.0.0.1 and print one link "
            "that opens the sweep's trial runs (model-training view; policy, seed, best "
            "val_acc and test_acc as columns). Ctrl-C stops it. With an http(s) tracking URI "
            "nothing is started: the link points to that server."
        ),
    )
    _add_sweep_and_store(ui)
    ui.add_argument(
        "--port",
        metavar="P",
        type=int,
        help="port on 127.0.0.1 for the UI (default 5000)",
    )
    ui.set_defaults(func=cmd_ui)
    return parser


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def _add_sweep_and_store(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """The NAME (``several``: NAME ...) and --tracking-uri a command reading sweeps back takes."""
    default = "default: the default spec's name, policy-compare"
    parser.add_argument(
        "name",
        nargs="*" if several else "?",
        metavar="NAME",
        help=(
            f"sweep name ({default}); several names pool their sweeps' seeds: sweeps of one "
            "spec run with different seeds, compared as one (not logged to any parent run)"
            if several
            else f"sweep name ({default})"
        ),
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: sqlite:///mlflow.db in the working folder)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        _check_command(args_list)
        args = build_parser().parse_args(args_list)
        return int(args.func(args, args_list))
    except KeyboardInterrupt:
        hint = ""
        if args_list[:1] == ["run"]:
            hint = f" (if the sweep had started, continue it with: {resume_command(args_list)})"
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, user_error_types()):
            print(one_line(exc), file=sys.stderr)
            return EXIT_USAGE
        raise


def _check_command(argv: list[str]) -> None:
    from trainables.validation import did_you_mean

    if not argv:
        raise SweepError(
            "no command given", f"use '{PROG} run' or '{PROG} compare' (see {PROG} --help)"
        )
    first = argv[0]
    if first.startswith("-"):
        return  # --help / a misplaced option: argparse answers
    if first not in COMMANDS:
        raise SweepError(
            f"unknown command '{first}'{did_you_mean(first, COMMANDS)}",
            f"use one of: {', '.join(COMMANDS)} (see {PROG} --help)",
        )


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from sweep.run_command import run

    return run(args, argv)


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from sweep.spec import builtin_spec_text, parse_yaml

    default = parse_yaml(builtin_spec_text("default"))
    names = list(args.name) or [default["name"]]
    cwd = Path.cwd()
    uri = normalize_tracking_uri(args.tracking_uri or default["mlflow"]["tracking_uri"], cwd)
    if args.target_acc is not None and not 0 < args.target_acc <= 1:
        raise SweepError(
            f"--target-acc must be in (0, 1], got {args.target_acc:g}",
            "pass an accuracy such as 0.5",
        )
    db = sqlite_db_path(uri)
    if db is not None and not db.is_file():  # opening it would create an empty database
        raise SweepError(
            f"no MLflow database at {db}",
            f"run '{PROG} run' first, or pass the --tracking-uri the sweep used",
        )
    out = None
    if args.out:
        out = Path(args.out).expanduser()
        out = out if out.is_absolute() else cwd / out
        check_storage(str(out))

    from sweep.store_check import check_tracking_store

    check_tracking_store(uri)
    from sweep.compare import compare_sweep

    comparison = compare_sweep(
        uri,
        names,
        experiment_name=args.experiment,
        out_dir=out,
        target_val_acc=args.target_acc,
        reference=args.reference,
        log_to_parent=True,
    )
    print(comparison.format(wide=args.wide))
    print_outputs(comparison, *(ui_command(name, uri, cwd) for name in names))
    return 0


# ---------------------------------------------------------------------------------------------
# ui
# ---------------------------------------------------------------------------------------------
def cmd_ui(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from sweep.spec import builtin_spec_text, parse_yaml
    from sweep.ui import run_ui

    default = parse_yaml(builtin_spec_text("default"))
    name = args.name or default["name"]
    uri = normalize_tracking_uri(args.tracking_uri or default["mlflow"]["tracking_uri"], Path.cwd())
    return run_ui(uri, name, args.port)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
