"""Run configuration: every knob declared once, with type, range, default and help.

Validation, the CLI flags, the API schema and the app's form are all derived from `FIELDS`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

TASKS = ("decoder", "random_proj", "abs")
NONLINEARITIES = ("relu", "gelu", "solu")
SAMPLE_KINDS = ("equal", "power_law")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "bf16")

# Bounds keep one run's memory small enough for a laptop; the per-config estimate
# (`memory_estimate_bytes`) is checked on top of these.
MAX_FEATURES = 4096
MAX_EMBED = 1024
MAX_NEURONS = 16384
MAX_BATCH = 65536
MAX_STEPS = 1 << 20
MAX_PERIODIC_FRAMES = 32  # replay frames stored at regular steps (besides one per power of 2)
MAX_SNAPSHOTS = 1 << 16  # a run's history keeps each: a million one-step snapshots made it slow to open
MAX_ACTIVATION_ELEMENTS = 1 << 27  # batch * max(k, N): 512 MiB of fp32 activations
MAX_SEED = 2**31 - 1
DEFAULT_MEMORY_BUDGET_GIB = 8.0
# The fields each part of `RunConfig.memory_estimate` grows with, for the message when a run is over budget.
MEMORY_DRIVERS = {"parameters": "n_neurons or n_features", "activations": "batch_size, n_neurons or n_features",
                  "sfa": "n_neurons or n_features", "checkpoints": "steps (a copy per power of 2), n_neurons or "
                  "n_features", "losses": "steps"}


MAX_MEMORY_BUDGET_GIB = 2.0**20


def env_setting(name: str, default: str | None = None) -> str | None:
    """An environment setting; set but empty counts as unset (`LAB_DATA_DIR=` must not mean this folder)."""
    return os.environ.get(name) or default


def memory_budget_problem() -> str | None:
    """Why LAB_MEMORY_BUDGET_GIB is unusable, else None: checked when the app or the CLI starts, so that a
    typo is named there instead of refusing (or, as nan, crashing) every run's validation."""
    raw = env_setting("LAB_MEMORY_BUDGET_GIB")
    if raw is None:
        return None
    # plain decimal text only, as config fields take: float() also reads "1_0" as 10
    gib = float(raw.strip()) if DECIMAL.fullmatch(raw.strip()) else math.nan
    if not 0 < gib <= MAX_MEMORY_BUDGET_GIB:  # also false for nan
        return (f"LAB_MEMORY_BUDGET_GIB must be a number of GiB in (0, {bound(MAX_MEMORY_BUDGET_GIB)}], "
                f"got {shown(raw)}")
    return None


def memory_budget_bytes() -> int:
    """Largest memory estimate a run may have (env LAB_MEMORY_BUDGET_GIB, default 8 GiB)."""
    problem = memory_budget_problem()
    if problem:
        raise ValueError(problem)
    return int(float(env_setting("LAB_MEMORY_BUDGET_GIB", str(DEFAULT_MEMORY_BUDGET_GIB))) * 2**30)


def knob(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, choices: tuple[str, ...] | None = None,
         label: str | None = None, basic: bool = False) -> Any:
    """A dataclass field carrying its validation range and help text as metadata."""
    meta = {"help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices,
            "label": label, "basic": basic}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """One training run of the toy model (ALGORITHM.md)."""

    task: str = knob("decoder", "What the model learns: decode features, re-project them, or their absolute value.",
                     choices=TASKS, label="Task", basic=True)
    nonlinearity: str = knob("relu", "Hidden-layer nonlinearity (SoLU is x*exp(x)).",
                             choices=NONLINEARITIES, label="Nonlinearity")
    sample_kind: str = knob("equal", "Feature frequencies: all equal, or power law p_i ~ i^-1.1.",
                            choices=SAMPLE_KINDS, label="Feature frequencies")
    n_features: int = knob(128, "N, number of sparse features.", lo=2, hi=MAX_FEATURES, label="Features N")
    embed_dim: int = knob(16, "m, input (embedding) dimension; must be below N.", lo=1, hi=MAX_EMBED,
                          label="Embedding dim m")
    n_neurons: int = knob(256, "k, number of hidden neurons.", lo=1, hi=MAX_NEURONS, label="Neurons k",
                          basic=True)
    eps: float = knob(1 / 64, "Mean probability that a feature is present in a sample (power_law: before each "
                      "probability is clipped at 1, which lowers the mean where eps is large); eps x N x batch x "
                      "steps must be at least 1, a feature present at least once in the run.", lo=0.0, hi=1.0,
                      lo_open=True, label="Feature density eps")
    lr: float = knob(0.01, "LAMB learning rate (cosine schedule, period 1024 steps).", lo=0.0, hi=1.0,
                     lo_open=True, label="Learning rate")
    init_bias: float = knob(0.0, "Constant added to every first-layer bias at initialisation (continuing a run, "
                            "a change pushes its trained biases by the difference).", lo=-10.0,
                            hi=10.0, label="Initial bias", basic=True)
    bias_decay: float = knob(0.0, "During the first half of training only, after each step: bias *= 1 - decay * lr "
                             "(the base lr). The total shrink is about exp(-decay * lr * steps / 2); about exp(-5) "
                             "works (0.12 at lr 0.01 and 8192 steps).",
                             lo=0.0, hi=1000.0, label="Bias decay", basic=True)
    l1_reg: float = knob(0.0, "L1 penalty on the hidden activations (after the nonlinearity); 0 in most of the "
                         "paper.", lo=0.0, hi=100.0, label="L1 reg")
    steps: int = knob(8192, "Training steps.", lo=2, hi=MAX_STEPS, label="Steps")
    batch_size: int = knob(512, "Samples per step.", lo=1, hi=MAX_BATCH, label="Batch size")
    seed: int = knob(0, "Random seed (embedder, init and samples).", lo=0, hi=MAX_SEED, label="Seed")
    init_variant: int = knob(0, "0: the initial weights and samples come from the seed, as in the paper. Any other "
                             "value draws them anew and keeps the seed's embedder: the same task from another start "
                             "(runs sharing this seed's embedder can be interpolated on Compare).", lo=0, hi=MAX_SEED,
                             label="Init variant")
    snapshot_every: int = knob(256, "Steps between live snapshots (SFA matrix, metrics).", lo=1, hi=MAX_STEPS,
                               label="Snapshot every")
    device: str = knob("auto", "Where to train: auto picks CUDA when available.", choices=DEVICES,
                       label="Device")
    precision: str = knob("fp32", "Matmul precision: fp32 is full single precision, as in the paper; tf32 uses a "
                          "CUDA GPU's tensor cores (faster; inputs rounded to 10 mantissa bits); bf16 also keeps the "
                          "activations in bfloat16 (fastest; 7 mantissa bits; weights, optimizer and loss stay fp32; "
                          "needs an Ampere or newer GPU). A CPU always computes in fp32.",
                          choices=PRECISIONS, label="Matmul precision")

    def validate(self) -> dict[str, str]:
        """Every problem at once, as {field: message naming the allowed range}."""
        errors: dict[str, str] = {}
        for f in dataclasses.fields(self):
            message = check_value(f, getattr(self, f.name))
            if message:
                errors[f.name] = message
        def ok(*names: str) -> bool:
            return not any(n in errors for n in names)

        if ok("embed_dim", "n_features") and self.embed_dim >= self.n_features:
            errors["embed_dim"] = (f"embed_dim (m) must be below n_features (N = {self.n_features}): "
                                   f"allowed 1 to {self.n_features - 1}, got {self.embed_dim}")
        if ok("bias_decay", "lr") and self.bias_decay * self.lr > 1.0:
            errors["bias_decay"] = (f"bias_decay * lr must be at most 1 (each step: bias *= 1 - bias_decay * lr); "
                                    f"with lr = {self.lr} allowed 0 to {1.0 / self.lr:g}, got {shown(self.bias_decay)}")
        if ok("snapshot_every", "steps") and self.snapshot_every > self.steps:
            errors["snapshot_every"] = (f"snapshot_every must be between 1 and steps ({self.steps}), "
                                        f"got {self.snapshot_every}")
        elif ok("snapshot_every", "steps") and self.steps > MAX_SNAPSHOTS * self.snapshot_every:
            fewest = fewest_snapshot_every(self.steps)
            errors["snapshot_every"] = (f"snapshot_every must be at least steps / {MAX_SNAPSHOTS} (each snapshot is "
                                        f"kept in the run's history): with steps = {self.steps} allowed {fewest} to "
                                        f"{self.steps}, got {self.snapshot_every}")
        # 1 - 1e-9: eps = 1 / (N * batch * steps) itself, whose product rounds just below 1, is allowed
        if ok("eps", "n_features", "batch_size", "steps") and self.expected_presences() < 1 - 1e-9:
            least = rounded_up(1 / (self.n_features * self.batch_size * self.steps))
            errors["eps"] = (f"eps * n_features * batch_size * steps must be at least 1 (on average, a feature "
                             f"present at least once in the whole run): with N = {self.n_features}, batch "
                             f"{self.batch_size} and {self.steps} steps allowed {least:g} to 1, "
                             f"got {shown(self.eps)}")
        if not errors:
            estimate, budget = self.memory_estimate(), memory_budget_bytes()
            total = sum(estimate.values())
            if total > budget:
                parts = ", ".join(f"{name} {size / 2**30:.2f}" for name, size in estimate.items())
                largest = max(estimate, key=estimate.__getitem__)
                errors["memory"] = (f"this run needs about {total / 2**30:.2f} GiB ({parts} GiB), over the budget of "
                                    f"{budget / 2**30:.2f} GiB (LAB_MEMORY_BUDGET_GIB): most of it is {largest}; "
                                    f"reduce {MEMORY_DRIVERS[largest]}")
        if ok("batch_size", "n_neurons", "n_features"):
            width = max(self.n_neurons, self.n_features)
            if self.batch_size * width > MAX_ACTIVATION_ELEMENTS:
                errors["batch_size"] = (f"batch_size * max(n_neurons, n_features) must be at most "
                                        f"{MAX_ACTIVATION_ELEMENTS} (memory); with width {width} allowed 1 to "
                                        f"{MAX_ACTIVATION_ELEMENTS // width}, got {self.batch_size}")
        return errors

    def expected_presences(self) -> float:
        """Features present, on average, over the whole run (every task keeps the mean density at eps)."""
        return self.eps * self.n_features * self.batch_size * self.steps

    def memory_estimate(self) -> dict[str, int]:
        """Bytes a run needs, by part: parameters with their gradients and LAMB state, one batch's
        activations (samples, inputs, hidden and outputs with their gradients), SFA snapshots, log2
        checkpoints with one being saved, and the per-step loss record (benchmarks/bench_memory.py
        measures it against a worker's peak)."""
        n, m, k, b, out = self.n_features, self.embed_dim, self.n_neurons, self.batch_size, self.output_dim
        params, log2_copies = self.parameter_count, self.log2_copies
        draws = 2 if self.task == "abs" else 1
        return {
            "parameters": 4 * 4 * params,  # weights, gradients, two LAMB moments
            "activations": 4 * b * (3 * n * draws + 2 * m + 3 * k + 3 * out),
            "sfa": 4 * 3 * k * n,
            # the log2 copies, and while a checkpoint is written: the weights copied, then all of it serialised
            # in memory (weights, LAMB moments, the log2 copies, losses) before the store takes it; x1.5 for the
            # allocator's slack after one such buffer every few seconds (bench_memory measured up to 1.4x without)
            "checkpoints": 4 * params * log2_copies + 6 * params * (4 + log2_copies) + 4 * self.steps,
            "losses": 4 * self.steps,
        }

    def disk_estimate(self) -> dict[str, int]:
        """Bytes the run store keeps for a run, by part, at most: its float16 SFA replay frames (periodic ones and
        one per power-of-2 step) and latest SFA, its run file (weights at every power of 2), a checkpoint twice over
        (the old one is removed once the new one is committed) and its history. SQLite's write-ahead log (up to ~4
        MB, shared by every run) is the store's own, in the space kept spare."""
        params, log2_copies, cells = self.parameter_count, self.log2_copies, self.n_neurons * self.n_features
        frames = -(-self.steps // frame_interval(self)) + 1 + log2_copies
        return {
            "replay frames": (2 * cells + 4 * self.n_neurons) * frames + 4 * (cells + self.n_neurons),
            "run file": 4 * params * (log2_copies + 1) + 4 * self.steps + 8 * self.embed_dim * self.n_features,
            "checkpoints": 2 * (4 * params * (3 + log2_copies) + 4 * self.steps),
            # its losses, and a row per snapshot (its metrics, pickled with their names), those at the powers of 2
            # before the first snapshot_every steps too
            "history": 8 * self.steps + 512 * (self.steps // self.snapshot_every + 1
                                               + self.snapshot_every.bit_length()),
        }

    def step_flops(self) -> float:
        """Matmul FLOPs of one step: input projection, both layers forward, their weight and input gradients."""
        n, m, k, b = self.n_features, self.embed_dim, self.n_neurons, self.batch_size
        return 2.0 * b * (n * m + m * k + k * n + k * n + k * n + m * k)

    def memory_estimate_bytes(self) -> int:
        return sum(self.memory_estimate().values())

    @property
    def parameter_count(self) -> int:
        """Weights and biases of one run: W1 (k x m), b1 (k), W2 (out x k)."""
        return self.n_neurons * self.embed_dim + self.n_neurons + self.output_dim * self.n_neurons

    @property
    def log2_copies(self) -> int:
        """The weights a run keeps at powers of 2 (steps 1, 2, 4, ... up to its last)."""
        return int(math.log2(self.steps)) + 1

    @property
    def output_dim(self) -> int:
        return self.embed_dim if self.task == "random_proj" else self.n_features

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}


def underflowed(text: str, number: float) -> bool:
    """Whether a number's text names a nonzero value that float parsing turned to 0 (1e-400)."""
    return number == 0 and any(digit in "123456789" for digit in text.lower().partition("e")[0])


def rounded_up(value: float, digits: int = 3) -> float:
    """`value` rounded up to `digits` significant digits: a lower bound a message names must itself be allowed."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.ceil(value * scale) / scale


def frame_interval(config: RunConfig) -> int:
    """Steps between the SFA frames a worker stores for replay: a multiple of snapshot_every giving at most ~32."""
    snapshots = max(1, config.steps // config.snapshot_every)
    return config.snapshot_every * max(1, math.ceil(snapshots / MAX_PERIODIC_FRAMES))


def fewest_snapshot_every(steps: int) -> int:
    """The smallest snapshot interval a run of `steps` may have (at most MAX_SNAPSHOTS snapshots)."""
    return -(-steps // MAX_SNAPSHOTS)


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the fields added since it was stored, at their defaults (which train as it did)."""
    return {**{name: f.default for name, f in FIELDS.items()}, **config}


def bound(x: float) -> str:
    """A range's end as written exactly (`:g` would round 1048576 to 1.04858e+06)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def allowed_range(f: dataclasses.Field) -> str:
    meta = f.metadata
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    lo, hi = meta["lo"], meta["hi"]
    if f.type in ("int", int):
        return f"an integer from {bound(lo)} to {bound(hi)}"
    left = "(" if meta["lo_open"] else "["
    return f"a number in {left}{bound(lo)}, {bound(hi)}]"


MAX_SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """A value as a message quotes it, cut short when huge (a 400-digit number, a long string): text and
    numbers as Python writes them, anything else as JSON (what an API client sent: true, null, {"a": 1})."""
    plain = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    try:
        text = repr(value) if plain else json.dumps(value, default=repr)
    except RecursionError:  # JSON nested just under the parser's own limit
        text = "a value nested too deeply to quote"
    except ValueError:  # an int past Python's digit limit for str()
        text = "a number too long to quote"
    return cut(text)


def cut(text: str) -> str:
    """Text as a message quotes it: cut short when huge."""
    return text if len(text) <= MAX_SHOWN_CHARS else f"{text[:MAX_SHOWN_CHARS - 8]}... ({len(text)} characters)"


def shown_value(value: Any) -> str:
    """A config value as tables and labels write it: floats in %g (0.01, 1e-05), the rest as text."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _out_of_range(f: dataclasses.Field, value: Any) -> str:
    # a number field's -11 was parsed to -11.0: quoted as given (an int field's 3.0 is refused as not an integer)
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 1e15 and f.type in ("float", float)
    return f"{f.name} must be {allowed_range(f)}, got {shown(int(value)) if whole else shown(value)}"


def _out_of_range_as_typed(f: dataclasses.Field, raw: Any) -> str:
    """The message for a value given out of range: a number typed as text is quoted as typed ("1e40", not the 41
    digits it parsed to; 2.5, not '2.5'); anything else, text that is no number included, as `_out_of_range` does."""
    if isinstance(raw, str) and DECIMAL.fullmatch(raw.strip()) and not f.metadata["choices"]:
        return f"{f.name} must be {allowed_range(f)}, got {cut(raw.strip())}"
    return _out_of_range(f, raw)


def check_value(f: dataclasses.Field, value: Any) -> str | None:
    """Message for a value outside the field's type or range, else None."""
    meta = f.metadata
    if meta["choices"]:
        if not isinstance(value, str) or value not in meta["choices"]:
            return _out_of_range(f, value)
        return None
    is_int = f.type in ("int", int)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _out_of_range(f, value)
    if isinstance(value, float) and (not math.isfinite(value) or (is_int and not value.is_integer())):
        return _out_of_range(f, value)
    lo, hi = meta["lo"], meta["hi"]
    too_low = value <= lo if meta["lo_open"] else value < lo
    if too_low or value > hi:  # Python compares a huge int with a float exactly, without converting it
        return _out_of_range(f, value)
    return None


DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class _Refused(ValueError):
    """A value refused with a message of its own, not the field's usual range message."""


def parse_value(f: dataclasses.Field, raw: Any) -> Any:
    """Coerce a raw value (JSON, form or command line) to the field's type; raise ValueError if impossible."""
    if f.metadata["choices"]:
        if not isinstance(raw, str):
            raise ValueError(_out_of_range(f, raw))
        return raw.strip()
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(_out_of_range(f, raw))
    is_int = f.type in ("int", int)
    try:
        if isinstance(raw, str):
            text = raw.strip()
            # float() also reads "1_0", Arabic-Indic digits, "nan" and "inf": only plain decimal text is a number
            if not DECIMAL.fullmatch(text):
                raise ValueError
            # an integer field reads "99999999999999999999" exactly, not through a float that rounds it
            number = int(text) if is_int and re.fullmatch(r"[+-]?[0-9]+", text) else float(text)
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError  # quote the text typed, not the inf that 400 digits became
            if underflowed(text, number):  # nor the 0 that 1e-400 underflows to, which may be in range
                raise _Refused(f"{f.name} must be {allowed_range(f)}, got {cut(text)}, too small for a float "
                               "(write 0 for zero)")
        else:
            number = raw
        if is_int:
            if isinstance(number, float) and number.is_integer():
                return int(number)
            if isinstance(number, int):
                return number
            raise ValueError
        return float(number)
    except _Refused:
        raise
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float (1 and 400 zeros)
        raise ValueError(_out_of_range_as_typed(f, raw)) from None


def unknown_field(name: str) -> tuple[str, str]:
    """The key and message for a name that is no RunConfig field (a 60000-character key is echoed cut)."""
    key = name if len(name) <= MAX_SHOWN_CHARS else shown(name)
    return key, f"unknown field {shown(name)}; allowed fields: {', '.join(FIELDS)}"


def checked_value(name: str, raw: Any) -> tuple[Any, str | None]:
    """One field's value parsed, and what is wrong with it on its own (its type and range), else None."""
    try:
        value = parse_value(FIELDS[name], raw)
    except ValueError as err:
        return None, str(err)
    problem = check_value(FIELDS[name], value)
    return value, problem and _out_of_range_as_typed(FIELDS[name], raw)


def config_from_dict(data: dict[str, Any], base: RunConfig | None = None) -> tuple[RunConfig | None, dict[str, str]]:
    """Build a config from loosely typed input; returns (config, {}) or (None, errors per field)."""
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        return None, {"body": "expected an object of run config fields"}
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in FIELDS:
            key, message = unknown_field(name)
            errors[key] = message
            continue
        value, problem = checked_value(name, raw)  # out of range: quoted as typed ("1e40"), not as its 41 digits
        if problem:
            errors[name] = problem
        if value is not None:
            values[name] = value
    config = dataclasses.replace(base or RunConfig(), **values)
    errors = {**config.validate(), **errors}
    return (None, errors) if errors else (config, {})


def snapshot_cap(given: dict[str, Any], base: RunConfig | None, swept_steps: tuple[Any, ...] = ()) -> int | None:
    """The snapshot_every to use instead of the preset's (or run file's, or the default) when the steps asked for are
    fewer, else None: `steps 100` on a preset that snapshots every 256 must not be refused over a field never given.
    `given` holds the fields as given (flags as typed, or JSON); `swept_steps` the values of a sweep over steps."""
    if "snapshot_every" in given:  # the user's own value: validated as given
        return None
    asked = (*swept_steps, given["steps"]) if "steps" in given else swept_steps
    try:
        fewest = min(parse_value(FIELDS["steps"], raw) for raw in asked) if asked else None
    except ValueError:  # a steps message says it; a second one about snapshot_every would only confuse
        return None
    every = (base or RunConfig()).snapshot_every
    return fewest if fewest is not None and 1 <= fewest < every else None
