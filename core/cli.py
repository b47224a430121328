"""Headless use of the engine.

    python -m core.cli train --preset quick-negative-bias --out run.pt --json
    python -m core.cli sweep --preset LR3 --scale quick --out lr3/
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.config import FIELDS, allowed_range, config_from_dict, memory_budget_problem, snapshot_cap
from core.continuation import (
    bias_push,
    continuation_errors,
    pushed,
    start_weights,
    steps_before,
    total_bias_hint,
    world_of,
)
from core.presets import PAPER_BATCHES, PRESETS
from core.runfile import RunFileError, build_run_file, config_of, load_run_file, save_run_file
from core.sweep import capped_sweep, preset_sweep, run_sweep, total_run_steps, value_label, with_settings
from core.train import Trainer, device_problem, iterate_training

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse takes "-1e-3" for an option ("expected one argument"): any negative number is a value here
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str) -> None:  # argparse's own exit code is 2 as well; keep its message short
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core.cli", description="Train the toy models of 'Engineering "
                     "Monosemanticity in Toy Models' without the web app.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one run and write its run file")
    train.add_argument("--preset", help="start from a preset: " + ", ".join(PRESETS))
    train.add_argument("--continue-from", metavar="RUN_FILE",
                       help="start from a run file's final weights and config; flags change the config (task, sizes, "
                            "seed and init stay the file's)")
    train.add_argument("--continue-step", type=int, metavar="STEP",
                       help="with --continue-from: start from the weights the file saved after STEP (1, 2, 4, ...)")
    for name, f in FIELDS.items():
        # Values stay strings here so that config_from_dict reports every bad field together.
        train.add_argument("--" + name.replace("_", "-"), dest=name, metavar="VALUE",
                           help=f"{f.metadata['help']} Allowed: {allowed_range(f)}. Default: the preset's or run "
                                f"file's, else {f.default}{SNAPSHOT_CAP_NOTE if name == 'snapshot_every' else ''}.")
    train.add_argument("--out", help="path of the run file to write (torch.save; load with weights_only=True)")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep = commands.add_parser("sweep", help="train a sweep (batched where shapes allow); one run file per run")
    sweep.add_argument("--preset", required=True, help="a paper batch (" + ", ".join(PAPER_BATCHES) + ") or any "
                       "preset with --field and --values")
    sweep.add_argument("--scale", choices=("quick", "paper"),
                       help="paper batches only: their quick-scale twin (default) or paper scale")
    sweep.add_argument("--field", help="the field to sweep (default: the paper batch's)")
    sweep.add_argument("--values", nargs="+", metavar="VALUE", help="values of the field (default: the batch's)")
    sweep.add_argument("--seeds", type=int, default=1, help="repeats per value (1 to 16)")
    sweep.add_argument("--share-seed", action="store_true",
                       help="give every value the same seeds (same world and init); default: each its own")
    for name, f in FIELDS.items():
        sweep.add_argument("--" + name.replace("_", "-"), dest=name, metavar="VALUE",
                           help=f"override the base config: {allowed_range(f)}. Default: the preset's"
                                f"{SNAPSHOT_CAP_NOTE if name == 'snapshot_every' else ''}")
    sweep.add_argument("--out", default="sweep-out", help="folder for run files and summary.json / summary.csv")
    sweep.add_argument("--json", action="store_true", help="print the summary as JSON on the last stdout line")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("presets", help="list the presets")
    return parser


SNAPSHOT_CAP_NOTE = " (at most steps, when not given)"


def scale_problem(preset: str, scale: str | None) -> str | None:
    """--scale picks a paper batch's size; any other preset has its own (the API refuses it alike)."""
    if scale is not None and preset in PRESETS and preset not in PAPER_BATCHES:
        return f"--scale is for the paper batches ({', '.join(PAPER_BATCHES)}); {preset} has its own sizes (leave " \
               "--scale out)"
    return None


def output_path_problem(path: str, folder: bool) -> str | None:
    """Why the run file (folder=False) or the sweep's output folder cannot be written at `path`, else None.

    Checked before training by doing it: the folders are made and a file is written where the output will go,
    then both removed, since permission bits miss a broken link, a read-only mount, /proc or a name too long."""
    if not path.strip():
        return "the path is empty; give a file path such as run.pt" if not folder else "the path is empty"
    target = Path(path).expanduser()
    try:
        if folder and target.exists() and not target.is_dir():
            return f"{path} is a file; give a folder for the run files and summary"
        if not folder and target.is_dir():
            return f"{path} is a folder; give a file path such as {target / 'run.pt'}"
        directory = target if folder else target.parent
        missing = [d for d in (directory, *directory.parents) if not d.exists() and not d.is_symlink()]
        directory.mkdir(parents=True, exist_ok=True)
        # save_run_file writes NAME.tmp first, 4 characters longer than the name
        probe = directory / PROBE_NAME if folder else target.with_name(target.name + ".tmp")
        with open(probe, "wb"):
            pass
        probe.unlink()
        for made in missing:  # nearest first; made again when the output is written
            made.rmdir()
    except FileExistsError as err:  # a folder on the way is a file or a link to nowhere
        kind = "a broken link" if Path(err.filename).is_symlink() else "a file"
        return f"cannot write {path}: {err.filename} is {kind}, so nothing can be written under it"
    except OSError as err:
        where = f" ({err.filename})" if err.filename and str(err.filename) != path else ""
        return f"cannot write {path}: {err.strerror or err}{where}"
    return None


PROBE_NAME = ".monosemanticity-lab-write-check"


def run_sweep_command(args: argparse.Namespace) -> int:
    if problem := scale_problem(args.preset, args.scale):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sweep = preset_sweep(args.preset, args.scale or "quick", args.values, args.seeds, args.field, args.share_seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    settings = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    sweep, errors = with_settings(capped_sweep(sweep, settings), settings)
    if sweep is None:
        for message in errors.values():  # each names its field (or says what of the whole config is wrong)
            print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    errors = sweep.validate()
    if problem := device_problem(sweep.base.device):
        errors["device"] = problem
    out_problem = output_path_problem(args.out, folder=True)
    if out_problem:
        errors["out"] = out_problem
    if errors:
        for name, message in errors.items():
            print(f"error: {name}: {message}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    started = time.perf_counter()
    jobs = sweep.jobs()
    print(f"sweep {sweep.title}: {sweep.field} = {', '.join(value_label(v) for v in sweep.values)}; "
          f"{len(sweep.runs())} runs in {len(jobs)} job(s)", file=sys.stderr)
    with tqdm(total=total_run_steps(sweep), unit="run-step", disable=args.quiet, file=sys.stderr) as bar:
        results = run_sweep(sweep, on_progress=bar.update)
    rows = []
    for result in results:
        name = f"run-{sweep.field}={value_label(result.value)}-seed{result.seed}.pt"
        if result.record is not None:
            save_run_file(result.record, out / name)
        rows.append({**result.row(sweep.field), "file": name if result.record is not None else None})
    seconds = time.perf_counter() - started
    summary = {"preset": sweep.name, "settings": dict(sweep.settings), "field": sweep.field,
               "values": list(sweep.values), "jobs": len(jobs),
               "seconds": seconds, "out": str(out), "runs": [json_safe(row) for row in rows]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        for row in rows:
            print(", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()
                            if k != "error" or v))
    failed = [row for row in rows if row["error"]]
    for row in failed:
        print(f"error: {sweep.field}={value_label(row[sweep.field])}, seed {row['seed']}: {row['error']}",
              file=sys.stderr)
    return 1 if failed else 0


def json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and inf (a run that diverged) as null: JSON has no NaN, and strict readers refuse the file."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def is_existing_file(path: str, existing: str) -> bool:
    """Whether `path` names the file at `existing`, however spelt: through a link, "./", "..", or a hard link."""
    try:
        return os.path.samefile(path, existing)
    except OSError:  # `path` is not there (yet) or cannot be looked at: not the file that was just read
        return False


def run_train(args: argparse.Namespace) -> int:
    base, parent, start = None, None, None
    if args.preset is not None and args.continue_from is not None:
        print("error: --preset and --continue-from both give the config: use one", file=sys.stderr)
        return EXIT_USAGE
    if args.preset is not None:
        if args.preset not in PRESETS:
            print(f"error: preset: unknown preset {args.preset!r}; allowed: {', '.join(PRESETS)}", file=sys.stderr)
            return EXIT_USAGE
        base = PRESETS[args.preset].config
    if args.continue_from is not None:
        try:
            parent = load_run_file(args.continue_from)
            base = config_of(parent)
        except (OSError, RunFileError) as err:
            print(f"error: --continue-from: {err}", file=sys.stderr)
            return EXIT_USAGE
    overrides = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    if (cap := snapshot_cap(overrides, base)) is not None:
        overrides["snapshot_every"] = cap
    config, errors = config_from_dict(overrides, base)
    if parent is not None and "init_bias" in errors and base is not None:
        errors["init_bias"] += total_bias_hint(str(args.continue_from), base)
    if config is not None and parent is not None:
        errors.update(continuation_errors(args.continue_from, base, config))
        try:
            start = pushed(start_weights(parent, args.continue_step), bias_push(base, config))
        except ValueError as err:
            errors["continue_step"] = f"--continue-step {err}"
    elif parent is None and args.continue_step is not None:
        errors["continue_step"] = "--continue-step is for --continue-from: give the run file too"
    if config is not None and (problem := device_problem(config.device)):
        errors["device"] = problem
    out_problem = output_path_problem(args.out, folder=False) if args.out is not None else None
    if out_problem:  # checked now: a bad path found after training would lose the run
        errors["out"] = f"out: {out_problem}"
    elif args.out is not None and parent is not None and is_existing_file(args.out, args.continue_from):
        errors["out"] = (f"--out must not be the --continue-from file ({args.continue_from}): the continued run "
                         "would replace the run it starts from; give another path")
    if errors:
        for message in errors.values():
            print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    started_from = None
    if parent is not None:
        step = args.continue_step or parent.get("metrics", {}).get("steps_trained")
        started_from = {"file": str(args.continue_from), "step": step, "bias_push": bias_push(base, config),
                        "offset": steps_before(parent.get("started_from")) + (step or 0)}
    trainer = Trainer([config], starts=[start], worlds=[world_of(parent) if parent is not None else None])
    started = time.perf_counter()
    with tqdm(total=config.steps, unit="step", disable=args.quiet, file=sys.stderr) as bar:
        for snap in iterate_training(trainer, max_seconds=0.5):
            bar.update(snap.step - bar.n)
            run = snap.runs[0]
            # the loss the summary and every view report: over the last 5% of the steps trained so far
            bar.set_postfix(loss=f"{trainer.final_loss(0):.4f}", mono=f"{run.summary.mono_ratio:.3f}")
            if run.error:
                print(f"error: {run.error}{saved_before_divergence(record_of(trainer, started_from), args.out)}",
                      file=sys.stderr)
                return 1
    seconds = time.perf_counter() - started
    record = record_of(trainer, started_from)
    assert record is not None  # it did not diverge
    out = str(save_run_file(record, args.out)) if args.out else None
    metrics = record["metrics"]
    summary: dict[str, Any] = {
        "final_loss": metrics["final_loss"], "mono_ratio": metrics["mono_ratio"],
        "mean_bias": metrics["mean_bias"], "steps": trainer.step, "seconds": seconds,
        "steps_per_second": trainer.step / seconds, "device": str(trainer.device), "out": out,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    return 0


def record_of(trainer: Trainer, started_from: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run file of the trainer's run (None: it diverged before any weights were saved), with where it started."""
    record = build_run_file(trainer)
    if record is not None and started_from:
        record["started_from"] = started_from
    return record


def saved_before_divergence(record: dict[str, Any] | None, out: str | None) -> str:
    """Save a diverged run's file (core.runfile.kept_weights) to `out`, if given; what the error adds about it."""
    if not out:
        return ""
    if record is None:
        return f"; nothing written to {out}: it diverged before any weights were saved"
    save_run_file(record, out)
    return (f"; {out} keeps the run up to step {record['metrics']['steps_trained']}, the last weights saved "
            "before it diverged (--continue-from it, at an early --continue-step, with a lower learning rate)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    budget_problem = memory_budget_problem()
    if budget_problem:
        print(f"error: {budget_problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "presets":
        for name, preset in PRESETS.items():
            print(f"{name:24s} {preset.description}")
        return 0
    if args.command == "sweep":
        return run_sweep_command(args)
    return run_train(args)


if __name__ == "__main__":
    raise SystemExit(main())
