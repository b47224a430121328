"""Headless use of the engine: `python -m core.cli train --preset quick-negative-bias --out run.pt --json`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tqdm import tqdm

from core.config import FIELDS, allowed_range, config_from_dict
from core.presets import PRESETS
from core.runfile import build_run_file, save_run_file
from core.train import Trainer, iterate_training

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
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
    for name, f in FIELDS.items():
        # Values stay strings here so that config_from_dict reports every bad field together.
        train.add_argument("--" + name.replace("_", "-"), dest=name, metavar="VALUE",
                           help=f"{f.metadata['help']} Allowed: {allowed_range(f)}. Default: {f.default}.")
    train.add_argument("--out", help="path of the run file to write (torch.save; load with weights_only=True)")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("presets", help="list the presets")
    return parser


def run_train(args: argparse.Namespace) -> int:
    base = None
    if args.preset is not None:
        if args.preset not in PRESETS:
            print(f"error: preset: unknown preset {args.preset!r}; allowed: {', '.join(PRESETS)}", file=sys.stderr)
            return EXIT_USAGE
        base = PRESETS[args.preset].config
    overrides = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    config, errors = config_from_dict(overrides, base)
    if errors:
        for message in errors.values():
            print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    trainer = Trainer([config])
    started = time.perf_counter()
    with tqdm(total=config.steps, unit="step", disable=args.quiet, file=sys.stderr) as bar:
        for snap in iterate_training(trainer, max_seconds=0.5):
            bar.update(snap.step - bar.n)
            run = snap.runs[0]
            bar.set_postfix(loss=f"{run.loss:.4f}", mono=f"{run.summary.mono_ratio:.3f}")
            if run.error:
                print(f"error: {run.error}", file=sys.stderr)
                return 1
    seconds = time.perf_counter() - started
    record = build_run_file(trainer)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        for name, preset in PRESETS.items():
            print(f"{name:24s} {preset.description}")
        return 0
    return run_train(args)


if __name__ == "__main__":
    raise SystemExit(main())
