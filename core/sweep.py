"""Sweeps: a base config and one swept field over a list of values, with optional repeated seeds.

Runs whose arrays share shapes train as one batched job (one optimiser step advances all of them);
sweeping a shape (N, m, k, task, batch size, ...) falls back to one job per value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.config import (
    FIELDS,
    RunConfig,
    allowed_range,
    checked_value,
    fewest_snapshot_every,
    parse_value,
    snapshot_cap,
    unknown_field,
)
from core.presets import PAPER_BATCHES, PRESETS
from core.train import Trainer, batched_jobs

MAX_VALUES = 32
MAX_SEEDS = 16
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
    # Fields of the base config set for every run, as (field, value): part of the sweep's title, so that LR3 and
    # LR3 with init_bias=0 tell apart in an overlay's legend.
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def title(self) -> str:
        if not self.settings:
            return self.name
        return f"{self.name} with " + ", ".join(f"{name}={value_label(value)}" for name, value in self.settings)

    def runs(self) -> list[tuple[Any, int, RunConfig]]:
        """(value, seed, config) for every run, value-major."""
        out = []
        # Init variants are starts in one world: their seed (the world) must not move with the value.
        shared = self.shared_seed or self.field == "init_variant"
        for j, value in enumerate(self.values):
            for seed in self.seeds:
                run_seed = seed if shared else seed + 1000 * j
                config = self.base.replace(**{self.field: value, "seed": run_seed})
                out.append((value, run_seed, with_snapshots_allowed(config) if self.field == "steps" else config))
        return out

    def configs(self) -> list[RunConfig]:
        return [c for _, _, c in self.runs()]

    def jobs(self) -> list[list[int]]:
        """Indices into runs() grouped into jobs (core.train.batched_jobs)."""
        return batched_jobs(self.configs())

    def validate(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.field not in SWEEPABLE:
            errors["field"] = f"field must be one of {', '.join(SWEEPABLE)}, got {self.field!r}"
            return errors
        if not 1 <= len(self.values) <= MAX_VALUES:
            errors["values"] = f"values must list 1 to {MAX_VALUES} values, got {len(self.values)}"
        if not 1 <= len(self.seeds) <= MAX_SEEDS:
            errors["seeds"] = f"seeds must list 1 to {MAX_SEEDS} seeds, got {len(self.seeds)}"
        if errors:  # a pasted list of thousands: its count says enough, without validating every run
            return errors
        repeated = repeated_labels(self.values)
        if repeated:  # their runs would be indistinguishable in every figure, table and file name
            errors["values"] = (f"values must differ (to 6 significant digits): {', '.join(repeated)} is given more "
                                "than once; for repeats of a value use seeds")
        found = [(value, config.validate()) for value, _seed, config in self.runs()]
        failing = {name: {value for value, errs in found if name in errs} for _, errs in found for name in errs}
        problems: dict[str, list[str]] = {}
        for value, errs in found:
            for name, message in errs.items():
                # the swept field's own, or another's that only some values meet (n_features values below embed_dim):
                # the values are what to change (not the seeds each value's runs use: said once, below)
                by_value = name == self.field or (name != "seed" and failing[name] != set(self.values))
                problems.setdefault("values" if by_value else name, []).append(
                    f"at {self.field}={value_label(value)}: {message}")
        for where, messages in problems.items():
            unique = list(dict.fromkeys(messages))
            if where == "seed":  # one message for the seeds the runs would use, not one per run
                top = max(seed for _value, seed, _config in self.runs())
                unique = [f"the runs' seeds would go up to {top}: seed must be {allowed_range(FIELDS['seed'])}"
                          + ("" if self.shared_seed else
                             " (without a shared seed, the runs of the i-th value use seed + 1000 x i)")]
            errors[where] = "; ".join([errors[where], *unique] if where in errors else unique)
        return errors


def with_snapshots_allowed(config: RunConfig) -> RunConfig:
    """A run of a sweep over steps with its snapshot interval raised to what its steps need (MAX_SNAPSHOTS): one
    interval cannot fit both 8 steps and 2^20, and the sweep would be refused whatever interval was given."""
    if not isinstance(config.steps, int) or not isinstance(config.snapshot_every, int) or config.snapshot_every < 1:
        return config  # validate() names what is wrong
    fewest = fewest_snapshot_every(config.steps)
    return config.replace(snapshot_every=fewest) if config.snapshot_every < fewest <= config.steps else config


def preset_sweep(name: str, scale: str = "quick", values: Sequence[Any] | None = None, seeds: int = 1,
                 field_name: str | None = None, shared_seed: bool = False) -> Sweep:
    """A paper batch (LR1 ... D1) at quick or paper scale, or any preset with a chosen field and values."""
    if name in PAPER_BATCHES:
        batch = PAPER_BATCHES[name] if scale == "paper" else PAPER_BATCHES[name].quick()
        base, swept, default_values = batch.base, batch.field, batch.values
    elif name in PRESETS:
        if not field_name:
            raise ValueError(f"preset {name!r} is a single run: name the field to sweep")
        base, swept, default_values = PRESETS[name].config, field_name, ()
    else:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)} (a paper batch sweeps its own field "
                         "and values; any preset sweeps the field and values you name)")
    if field_name is not None and field_name != swept:  # "" is a mistake to name, not the batch's field
        # the batch's values belong to its own field, which takes the value the batch's single run has (D1's decay)
        base = base.replace(**{swept: batch.default})
        swept, default_values = field_name, ()
    if swept not in SWEEPABLE:
        raise ValueError(f"field must be one of {', '.join(SWEEPABLE)}, got {swept!r}")
    problems = []  # every one at once; the number of values is Sweep.validate's to check
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        problems.append(f"seeds must be an integer from 1 to {MAX_SEEDS}, got {seeds!r}")
    if values is not None and len(values) > MAX_VALUES:  # counted before thousands are parsed, each with its message
        problems.append(f"values must list 1 to {MAX_VALUES} values, got {len(values)}")
        values = None
    parsed = []
    for raw in values or ():
        try:
            parsed.append(parse_value(FIELDS[swept], raw))
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError("; ".join(problems))
    parsed = parsed or list(default_values)
    if not parsed:
        raise ValueError(f"values are needed: {name} has none of its own for {swept}")
    # quick is the default scale; a paper-scale batch says so, so that LR3 at both scales tell apart everywhere
    title = f"{name} (paper scale)" if name in PAPER_BATCHES and scale == "paper" else name
    return Sweep(base, swept, tuple(parsed), seeds_from(base.seed, seeds), name=title, shared_seed=shared_seed)


def with_settings(sweep: Sweep, settings: dict[str, Any]) -> tuple[Sweep | None, dict[str, str]]:
    """The sweep with fields of its base config set for every run (LR3's learning rates from init_bias=0), or the
    problems keyed by field. A set seed is where the repeats' seeds start."""
    if not settings:
        return sweep, {}
    errors = {}
    if sweep.field in settings:
        errors[sweep.field] = (f"{sweep.field} is the swept field: give its values as the sweep's values, not as a "
                               "setting")
    values = {}
    for name, raw in settings.items():
        if name == sweep.field:
            continue
        if name not in FIELDS:
            key, message = unknown_field(name)
            errors[key] = message
            continue
        value, problem = checked_value(name, raw)
        if problem:
            errors[name] = problem
        else:
            values[name] = value
    if errors:
        return None, errors
    # Checks across fields are each run's (Sweep.validate), with its own value of the swept field: against the
    # preset's value, embed_dim=40 was refused for a sweep of n_features over 64 and 128 (N = 32 in the preset).
    base = sweep.base.replace(**values)
    # in the form's order; a setting that changes nothing does not name the sweep
    chosen = tuple((name, getattr(base, name)) for name in FIELDS
                   if name in settings and getattr(base, name) != getattr(sweep.base, name))
    return replace(sweep, base=base, seeds=seeds_from(base.seed, len(sweep.seeds)), settings=chosen), {}


def problems_given_in(problems: dict[str, str], settings: dict[str, Any], where: str) -> dict[str, str]:
    """Sweep.validate's problems, those of fields set for every run gathered under `where` (the box or JSON key they
    were given in), messages joined."""
    gathered: dict[str, str] = {}
    for key, message in problems.items():
        key = where if key in settings else key
        gathered[key] = f"{gathered[key]}; {message}" if key in gathered else message
    return gathered


def seeds_from(first: int, count: int) -> tuple[int, ...]:
    """The seeds of `count` repeats starting at the base config's seed."""
    return tuple(range(first, first + count))


@dataclass
class SweepResult:
    value: Any
    seed: int
    config: RunConfig
    record: dict[str, Any] | None = field(repr=False)  # None: it diverged before any weights were saved
    error: str | None = None

    def row(self, field_name: str) -> dict[str, Any]:
        """Its line of the summary; a diverged run's results are none (its file keeps the weights saved before)."""
        m = {} if self.error or self.record is None else self.record["metrics"]
        return {field_name: self.value, "seed": self.seed, "final_loss": m.get("final_loss"),
                "mono_ratio": m.get("mono_ratio"),
                "mono_per_neuron": m["mono_neurons"] / self.config.n_neurons if m else None,
                "nearly_mono_neurons": m.get("nearly_mono_neurons"), "mean_bias": m.get("mean_bias"),
                "dead_neurons": m.get("dead_neurons"), "error": self.error}


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
            results[i] = SweepResult(value, seed, config, build_run_file(trainer, r), snapshot.runs[r].error)
    return [results[i] for i in range(len(runs))]


def total_run_steps(sweep: Sweep) -> int:
    return sum(c.steps for c in sweep.configs())


def repeated_labels(values: Sequence[Any]) -> list[str]:
    """The labels (value_label) that more than one of the values share."""
    labels = [value_label(v) for v in values]
    return sorted({label for label in labels if labels.count(label) > 1})


def value_label(value: Any) -> str:
    # + 0.0: -0.0 is 0 (two runs labelled -0 and 0 were one value twice); a 400-digit integer is cut short
    if isinstance(value, float) and math.isfinite(value):
        return f"{value + 0.0:g}"
    text = str(value)
    return text if len(text) <= 24 else f"{text[:16]}... ({len(text)} characters)"


def capped_sweep(sweep: Sweep, given: dict[str, Any]) -> Sweep:
    """The sweep with its base's snapshot_every capped at the fewest steps any run trains (snapshot_cap)."""
    swept = sweep.values if sweep.field == "steps" else ()
    cap = snapshot_cap(given, sweep.base, swept)
    return sweep if cap is None else replace(sweep, base=sweep.base.replace(snapshot_every=cap))
