"""``python -m sweep run``: the checks in order, then Ray, the tracker and the sweep, then
what the terminal shows at the end (summary, comparison, the commands to resume or browse).

Every check (spec, data folder, storage path, tracking store, sweep to resume) runs before Ray
starts, before any MLflow run, before any folder is made -- so a mistake leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep.errors import PROG, SweepError, one_line
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
from sweep.store import normalize_tracking_uri


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``sweep run``: every check first (nothing is made before they pass), then Ray, the
    tracker and the sweep; then the summary, the comparison and the command to browse it."""
    from sweep.spec import SpecError, SweepSpec, load_builtin_spec, load_spec
    from sweep.tuner import resolve_storage, sweep_exists

    if not args.address:
        bind_ray_to_loopback()

    # 1. The spec (with the command line's overrides), fully validated.
    if args.resume and args.seeds is not None:
        raise SweepError(
            "--seeds cannot change a sweep being resumed (its trials are fixed)",
            "run the other seeds as another sweep (--seeds ... --name NEW) and "
            f"'{PROG} compare OLD NEW'",
        )
    overrides = {
        "name": args.name,
        "data.dir": args.data_dir,
        "mlflow.tracking_uri": args.tracking_uri,
        "storage_path": args.storage_path,
        "seeds": args.seeds,
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
    from trainables.cifar_files import resolve_data_dir

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
        "seeds": ("--seeds", args.seeds),
    }
    for prefix, (option, value) in options.items():
        if message.startswith(prefix) and value is not None:
            return f"fix {option}"
    if args.spec and f"spec file {args.spec} " in message:  # missing or unreadable: its own fix
        return ""
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
    more = more_seeds_commands(argv, spec.name, tracking_uri, comparison.next_seeds())
    print(comparison.format(more_seeds=more))
    print_outputs(comparison, ui_command(spec.name, tracking_uri))
    return code


def more_seeds_commands(
    argv: Sequence[str], name: str, tracking_uri: str, seeds: str
) -> tuple[str, str]:
    """The ``run`` that adds ``seeds`` to a finished sweep (its own arguments, those seeds and a
    new name) and the ``compare`` that pools the two."""
    new = f"{name}-seeds-{seeds}"
    args: list[str] = []
    skip = False
    for arg in argv:  # the sweep's own arguments less --seeds, --name and --resume
        if skip or arg == "--resume" or arg.startswith(("--seeds=", "--name=")):
            skip = False
            continue
        if arg in ("--seeds", "--name"):
            skip = True
            continue
        args.append(arg)
    run = shlex.join([*args, "--seeds", seeds, "--name", new])
    compare = f"{PROG} compare {shlex.join([name, new])}{_uri_option(tracking_uri)}"
    return f"{PROG} {run}", compare


def print_outputs(comparison: Any, *ui: str) -> None:
    """Where the comparison's files are, and how to browse the runs (a command per sweep)."""
    folder = comparison.out_dir
    print(f"\ncomparison table and plots in {folder}:", flush=True)
    for path in comparison.files.values():
        print(f"  {path}")
    print("\nBrowse the runs with:\n" + "\n".join(f"  {u}" for u in ui), flush=True)


def ui_command(sweep_name: str, tracking_uri: str, cwd: Path | None = None) -> str:
    """The ``sweep ui`` command for a sweep; --tracking-uri only when not the default here."""
    return f"{PROG} ui {shlex.quote(sweep_name)}{_uri_option(tracking_uri, cwd)}"


def _uri_option(tracking_uri: str, cwd: Path | None = None) -> str:
    """`` --tracking-uri URI`` for a command run here, or nothing for the default store."""
    from sweep.spec import builtin_spec_text, parse_yaml

    default_uri = parse_yaml(builtin_spec_text("default"))["mlflow"]["tracking_uri"]
    default = normalize_tracking_uri(default_uri, cwd or Path.cwd())
    return "" if tracking_uri == default else f" --tracking-uri {shlex.quote(tracking_uri)}"


def resume_command(argv: Sequence[str]) -> str:
    args = list(argv)
    if args[:1] == ["run"] and "--resume" not in args:
        args.append("--resume")
    return f"{PROG} {shlex.join(args)}"
