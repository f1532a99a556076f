"""``python -m sweep``: run a sweep of LR policies, compare the runs of one, or browse them.

    python -m sweep run [--spec FILE] [--smoke-test] [--resume] [--address ADDR]
                        [--data-dir DIR] [--tracking-uri URI] [--name NAME] [--storage-path PATH]
    python -m sweep compare [NAME] [--tracking-uri URI] [--experiment NAME] [--out DIR]
                            [--target-acc X]
    python -m sweep ui [NAME] [--tracking-uri URI] [--port P]

Every user error prints one line, ``error: <problem>; <fix>``, on stderr and exits with 2.
All checks (spec, data folder, storage path, tracking store, sweep to resume) run before Ray
starts, before any MLflow run, before any folder is made -- so a mistake leaves nothing behind.
Ray, MLflow and torch are imported inside the functions that need them: ``--help`` and the
error paths stay fast.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from sweep.errors import EXIT_USAGE, SweepError, one_line, user_error_types
from sweep.preflight import (
    check_address,
    check_cluster_resources,
    check_data_sizes,
    check_local_resources,
    check_storage,
    load_data,
    sweep_folder_exists,
    sweep_started,
)
from sweep.ray_start import bind_ray_to_loopback, init_ray
from sweep.store import normalize_tracking_uri, sqlite_db_path

PROG = "python -m sweep"
COMMANDS = ("run", "compare", "ui")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one ``error:`` line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise SweepError(message.rstrip("."), f"see {self.prog} --help")


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
            "accuracy and the epochs/images needed to reach the target accuracy; the table and "
            "plots are also logged to the sweep's parent run."
        ),
    )
    _add_sweep_and_store(compare)
    compare.add_argument(
        "--experiment",
        metavar="NAME",
        help="MLflow experiment holding the sweep (default: the sweep name)",
    )
    compare.add_argument(
        "--out",
        metavar="DIR",
        help="write the comparison (table, JSON and plots) to this folder (default: "
        "comparison/ in the sweep's results folder, or ./NAME-comparison when that is not "
        "a local folder); it is also logged to the sweep's parent run",
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
def _add_sweep_and_store(parser: argparse.ArgumentParser) -> None:
    """The NAME and --tracking-uri a command reading a sweep back takes."""
    parser.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="sweep name (default: the default spec's name, policy-compare)",
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
    from trainables.config import did_you_mean

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


def resume_command(argv: Sequence[str]) -> str:
    args = list(argv)
    if args[:1] == ["run"] and "--resume" not in args:
        args.append("--resume")
    return f"{PROG} {shlex.join(args)}"


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from sweep.spec import SpecError, SweepSpec, load_builtin_spec, load_spec
    from sweep.tuner import resolve_storage, sweep_exists

    if not args.address:
        bind_ray_to_loopback()

    # 1. The spec (with the command line's overrides), fully validated.
    overrides = {
        "name": args.name,
        "data.dir": args.data_dir,
        "mlflow.tracking_uri": args.tracking_uri,
        "storage_path": args.storage_path,
    }
    spec: SweepSpec
    fix_spec = f"fix {args.spec}" if args.spec else "fix the command-line options"
    try:
        if args.spec:
            spec = load_spec(Path(args.spec), overrides, smoke=args.smoke_test)
        else:
            builtin = "smoke" if args.smoke_test else "default"
            spec = load_builtin_spec(builtin, overrides, smoke=args.smoke_test)
    except SpecError as exc:
        raise SweepError(str(exc), _spec_fix(str(exc), args)) from None
    cwd = Path.cwd()

    # 2. Resources this machine can never give (a local run only; a cluster is asked later),
    #    or a cluster address that does not answer.
    if args.address:
        check_address(args.address)
    else:
        check_local_resources(spec)

    # 3. The data folder (download allowed only when no folder was named).
    from trainables.data import resolve_data_dir

    explicit = spec.data.dir
    data_dir = resolve_data_dir(explicit, download=explicit is None)
    # Trials log the folder actually used (it is documentary inside a sweep: see base_trial).
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"dir": str(data_dir)})})

    # 4. Where Ray keeps results: writable, without creating anything yet.
    storage = resolve_storage(spec.storage_path, cwd)
    check_storage(storage)

    # 5. The tracking store.
    tracking_uri = normalize_tracking_uri(spec.mlflow.tracking_uri, cwd)
    from sweep.store_check import check_tracking_store

    check_tracking_store(tracking_uri)

    # 6. Resume only what exists; never silently mix a new sweep into an old one.
    restore = sweep_exists(storage, spec.name)  # Tune saved the sweep's state
    if args.resume and not restore:
        if not sweep_started(storage, spec.name, tracking_uri, spec.experiment_name):
            raise SweepError(
                f"no sweep named '{spec.name}' under {storage} to resume",
                "run without --resume to start it (or pass the --name/--storage-path it ran with)",
            )
        # Interrupted before Tune saved anything: start it, in the same MLflow parent run.
        print(
            f"note: sweep '{spec.name}' stopped before Tune saved any of it; starting its "
            "trials from the beginning",
            flush=True,
        )
    if not args.resume and (restore or sweep_folder_exists(storage, spec.name)):
        raise SweepError(
            f"a sweep named '{spec.name}' already exists under {storage}",
            "pass --resume to continue it, or --name NEW to start another",
        )

    # 7. The data, split once on the driver (the same split for every trial).
    splits = load_data(spec, data_dir)
    check_data_sizes(spec, splits, fix_spec)

    # 8. Ray, the tracker, the sweep. The results folder first: from here on the sweep has
    #    started, and --resume can continue it whenever it is interrupted.
    from sweep.tuner import experiment_path, is_uri

    if not is_uri(storage):
        Path(experiment_path(storage, spec.name)).mkdir(parents=True, exist_ok=True)
    import ray

    from sweep.terminal import quiet_ray

    quiet_ray(args.verbose)
    init_ray(args.address)
    try:
        check_cluster_resources(spec, cluster=bool(args.address))
        from sweep.tracking import MLflowTracker
        from sweep.tuner import InterruptWatch, run_sweep

        tracker = MLflowTracker(
            tracking_uri=tracking_uri,
            experiment_name=spec.experiment_name,
            sweep_name=spec.name,
            spec_text=spec.text,
            spec_path=str(Path(spec.source).resolve()) if spec.source else None,
            results_dir=experiment_path(storage, spec.name),
            resume=args.resume,
            name_keys=[dim.key for dim in spec.search_space.dims],
        )
        if args.address and "://" not in storage:
            print(
                "note: storage_path is a local folder; on a multi-node cluster give every node "
                "the same storage (s3://..., gs://... or a shared filesystem)",
                flush=True,
            )
        print(
            f"sweep '{spec.name}': {spec.trial_count()} trials "
            f"({_count(len(spec.policies), 'policy', 'policies')} x "
            f"{_count(len(spec.seeds), 'seed', 'seeds')}"
            + (
                f" x {spec.search_space.grid_size * spec.search_space.num_samples} samples"
                if spec.search_space.dims
                else ""
            )
            + f"), results in {storage}/{spec.name}",
            flush=True,
        )
        if restore:
            print(
                f"resuming sweep '{spec.name}': finished trials are kept, the others continue "
                "from their newest checkpoint",
                flush=True,
            )
        with InterruptWatch() as watch:
            try:
                results = run_sweep(
                    spec,
                    splits=splits,
                    tracker=tracker,
                    resume=restore,
                    storage=storage,
                    verbose=args.verbose,
                )
            except BaseException as exc:
                # The parent run must not stay RUNNING: KILLED on Ctrl-C (resumable), FAILED on
                # an error. (On SIGKILL nothing runs here; --resume reopens the same runs.)
                close_after_error(tracker, exc)
                raise
    finally:
        if ray.is_initialized():
            ray.shutdown()

    return report_run(spec, results, tracking_uri, argv, interrupted=watch.interrupted)


def close_after_error(tracker: Any, exc: BaseException) -> None:
    """End the sweep's parent run after the driver failed: KILLED when interrupted, else FAILED
    with the error's first line as the reason. Never raises."""
    interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
    reason = None if interrupted else f"driver error: {type(exc).__name__}: {exc}"
    try:
        tracker.close_parent("KILLED" if interrupted else "FAILED", reason)
    except Exception:  # pragma: no cover - close_parent never raises; be safe anyway
        logging.getLogger(__name__).warning("could not close the sweep's parent run")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _spec_fix(message: str, args: argparse.Namespace) -> str:
    options = {
        "name:": ("--name", args.name),
        "data.dir:": ("--data-dir", args.data_dir),
        "mlflow.tracking_uri:": ("--tracking-uri", args.tracking_uri),
        "storage_path:": ("--storage-path", args.storage_path),
    }
    for prefix, (option, value) in options.items():
        if message.startswith(prefix) and value is not None:
            return f"fix {option}"
    if args.spec:
        return f"fix {args.spec} and rerun"
    return "fix the command-line options"


def report_run(
    spec: Any, results: Any, tracking_uri: str, argv: Sequence[str], *, interrupted: bool = False
) -> int:
    """Summary, comparison table and UI command. Exit code: 0 all trials finished, 1 some
    errored (or nothing to compare), 130 interrupted (the resume command is printed)."""
    total = len(results)
    errors = results.num_errors
    finished = results.num_terminated
    if interrupted:
        print(f"\nsweep interrupted: {errors} of {total} trials errored so far", flush=True)
    else:
        print(f"\n{finished}/{total} trials finished, {errors} errored", flush=True)
    code = 0
    if errors:
        for result in results:
            if result.error is not None:
                name = getattr(result, "path", "?")
                first = " ".join(str(result.error).split())[:200]
                print(f"  errored: {name}: {first}", flush=True)
        code = 1
    if interrupted or finished + errors < total:
        # No comparison of a half-run sweep (it would also be logged to the parent run).
        print(f"continue the sweep with: {resume_command(argv)}", flush=True)
        return 130
    from sweep.compare import CompareError, compare_sweep

    try:
        comparison = compare_sweep(
            tracking_uri,
            spec.name,
            experiment_name=spec.experiment_name,
            target_val_acc=spec.target_val_acc,
            log_to_parent=True,
        )
    except CompareError as exc:
        print(one_line(exc), file=sys.stderr)
        return code or 1
    print()
    print(comparison.format())
    print_outputs(comparison, ui_command(spec.name, tracking_uri))
    return code


def print_outputs(comparison: Any, ui: str) -> None:
    """Where the comparison's files are, and how to browse the runs."""
    folder = comparison.out_dir
    print(f"\ncomparison table and plots in {folder}:", flush=True)
    for path in comparison.files.values():
        print(f"  {path}")
    print(f"\nBrowse the runs with:\n  {ui}", flush=True)


def ui_command(sweep_name: str, tracking_uri: str, cwd: Path | None = None) -> str:
    """The ``sweep ui`` command for a sweep; --tracking-uri only when not the default here."""
    from sweep.spec import builtin_spec_text, parse_yaml

    default_uri = parse_yaml(builtin_spec_text("default"))["mlflow"]["tracking_uri"]
    default = normalize_tracking_uri(default_uri, cwd or Path.cwd())
    option = "" if tracking_uri == default else f" --tracking-uri {shlex.quote(tracking_uri)}"
    return f"{PROG} ui {shlex.quote(sweep_name)}{option}"


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from sweep.spec import builtin_spec_text, parse_yaml

    default = parse_yaml(builtin_spec_text("default"))
    name = args.name or default["name"]
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
        name,
        experiment_name=args.experiment,
        out_dir=out,
        target_val_acc=args.target_acc,
        reference=args.reference,
        log_to_parent=True,
    )
    print(comparison.format(wide=args.wide))
    print_outputs(comparison, ui_command(name, uri, cwd))
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
