"""Sweeps: a base config and one swept field over a list of values, with optional repeated seeds.

Runs whose arrays share shapes train as one batched job (one optimiser step advances all of them);
sweeping a shape (N, m, k, task, batch size, ...) falls back to one job per value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import FIELDS, RunConfig, parse_value
from core.presets import PAPER_BATCHES, PRESETS
from core.train import Trainer, batch_key, max_runs_per_job, worth_batching

SWEEPABLE = tuple(n for n, f in FIELDS.items() if not f.metadata["choices"] and n not in ("seed", "snapshot_every"))


@dataclass(frozen=True)
class Sweep:
    base: RunConfig
    field: str
    values: tuple[Any, ...]
    seeds: tuple[int, ...] = (0,)
    name: str = ""
    # False: each value gets its own seed stream (own embedder and init), seed + 1000 * value index.
    # True: every value starts from the same world and init, so only the swept value differs.
    shared_seed: bool = False

    def runs(self) -> list[tuple[Any, int, RunConfig]]:
        """(value, seed, config) for every run, value-major."""
        out = []
        for j, value in enumerate(self.values):
            for seed in self.seeds:
                run_seed = seed if self.shared_seed else seed + 1000 * j
                out.append((value, run_seed, self.base.replace(**{self.field: value, "seed": run_seed})))
        return out

    def configs(self) -> list[RunConfig]:
        return [c for _, _, c in self.runs()]

    def jobs(self) -> list[list[int]]:
        """Indices into runs() grouped into jobs: batched jobs when only per-run fields vary and the shapes
        are small enough for batching to pay (core.train.worth_batching), each job within the memory budget
        (core.train.max_runs_per_job); else one job per run."""
        configs = self.configs()
        groups: dict[tuple, list[int]] = {}
        for i, config in enumerate(configs):
            key = batch_key(config) if worth_batching(config) else (i,)
            groups.setdefault(key, []).append(i)
        jobs = []
        for group in groups.values():
            size = max_runs_per_job(configs[group[0]])
            jobs.extend(group[start:start + size] for start in range(0, len(group), size))
        return jobs

    def validate(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.field not in SWEEPABLE:
            errors["field"] = f"field must be one of {', '.join(SWEEPABLE)}, got {self.field!r}"
            return errors
        if not 1 <= len(self.values) <= 32:
            errors["values"] = f"values must list 1 to 32 values, got {len(self.values)}"
        if not 1 <= len(self.seeds) <= 16:
            errors["seeds"] = f"seeds must list 1 to 16 seeds, got {len(self.seeds)}"
        for value, _seed, config in self.runs():
            for name, message in config.validate().items():
                errors.setdefault("values" if name == self.field else name, f"at {self.field}={value}: {message}")
        return errors


def preset_sweep(name: str, scale: str = "quick", values: list[str] | None = None, seeds: int = 1,
                 field_name: str | None = None, shared_seed: bool = False) -> Sweep:
    """A paper batch (LR1 ... D1) at quick or paper scale, or any preset with a chosen field and values."""
    if name in PAPER_BATCHES:
        batch = PAPER_BATCHES[name] if scale == "paper" else PAPER_BATCHES[name].quick()
        base, swept, default_values = batch.base, batch.field, batch.values
    elif name in PRESETS:
        if not field_name:
            raise ValueError(f"preset {name!r} is a single run: name the field to sweep (--field)")
        base, swept, default_values = PRESETS[name].config, field_name, ()
    else:
        raise ValueError(f"unknown preset {name!r}; paper batches: {', '.join(PAPER_BATCHES)}")
    swept = field_name or swept
    if swept not in SWEEPABLE:
        raise ValueError(f"field must be one of {', '.join(SWEEPABLE)}, got {swept!r}")
    parsed = tuple(parse_value(FIELDS[swept], v) for v in values) if values else tuple(default_values)
    if not parsed:
        raise ValueError("no values to sweep (--values)")
    return Sweep(base, swept, parsed, tuple(range(base.seed, base.seed + seeds)), name=name, shared_seed=shared_seed)


@dataclass
class SweepResult:
    value: Any
    seed: int
    config: RunConfig
    record: dict[str, Any] = field(repr=False)

    def row(self, field_name: str) -> dict[str, Any]:
        m = self.record["metrics"]
        return {field_name: self.value, "seed": self.seed, "final_loss": m["final_loss"],
                "mono_ratio": m["mono_ratio"], "mono_per_neuron": m["mono_neurons"] / self.config.n_neurons,
                "mean_bias": m["mean_bias"], "dead_neurons": m["dead_neurons"]}


def run_sweep(sweep: Sweep, on_progress: Callable[[int], None] | None = None, chunk: int = 256) -> list[SweepResult]:
    """Train every run of the sweep (batched where shapes allow); returns results in runs() order."""
    from core.runfile import build_run_file

    runs = sweep.runs()
    results: dict[int, SweepResult] = {}
    for job in sweep.jobs():
        trainer = Trainer([runs[i][2] for i in job])
        while trainer.step < trainer.steps:
            before = trainer.step
            trainer.advance(chunk)
            if on_progress:
                on_progress((trainer.step - before) * len(job))
        snapshot = trainer.snapshot()
        for r, i in enumerate(job):
            value, seed, config = runs[i]
            record = build_run_file(trainer, r)
            if snapshot.runs[r].error:
                record["metrics"]["error"] = snapshot.runs[r].error
            results[i] = SweepResult(value, seed, config, record)
    return [results[i] for i in range(len(runs))]


def total_run_steps(sweep: Sweep) -> int:
    return sum(c.steps for c in sweep.configs())


def value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)
