"""The training loop (ALGORITHM.md, "Loss and training") as a generator of snapshots.

`Trainer` advances R runs together; runs that share array shapes can be batched because each
keeps its own generator, parameters, LAMB state and learning rate. No I/O happens here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.config import RunConfig, memory_budget_bytes
from core.cuda_graph import WARMUP_STEPS, StepGraph, graphs_wanted, on_side_stream
from core.data import make_embedder, sample_task_batch, task_sampler
from core.metrics import SfaSummary, final_loss, single_feature_activations
from core.model import RunWeights, World, init_weights
from core.stacked_lamb import StackedLamb, moments_fit, stacked_from_library
from core.step import Gradients, Workspace, squared_error_and_gradients

COSINE_T_MAX = 512
LOSS_RECORD_EVERY = 16  # the paper code's loss log interval (kept in the run file as `losses`)
DEAD_NEURON_CHECK_EVERY = 16  # steps between looks for dead ReLU neurons while most are live (CPU)
# batch * k * out below which skipping dead neurons does not pay: gathering the live ones costs about what it saves
# at quick shapes (512 * 256 * 128 = 2^24; `bench_dead_neurons --by-share`)
MIN_WORK_TO_SKIP_DEAD = 1 << 26

# Fields that may differ between runs trained together: everything else fixes array shapes or the
# schedule, so runs differing in them must train as separate jobs.
PER_RUN_FIELDS = frozenset({"lr", "init_bias", "bias_decay", "l1_reg", "seed", "init_variant", "eps", "sample_kind"})


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class IncompatibleCheckpoint(ValueError):
    """A checkpoint written by an earlier version of the engine, which this one cannot continue."""


def variant_seed(seed: int, variant: int) -> int:
    """The generator seed of an init variant: distinct for every (seed, variant), never the seed's own stream."""
    return (seed * 0x9E3779B1 + variant * 0x85EBCA77 + 1) % 2**63


def scheduled_lr(base_lr: float, steps: np.ndarray | int) -> np.ndarray:
    """The learning rate each step (1-based) trains with: CosineAnnealingLR's closed form, period 2 * T_max."""
    return base_lr * 0.5 * (1.0 + np.cos(np.pi * (np.asarray(steps, dtype=np.float64) - 1) / COSINE_T_MAX))


def schedule_steps(total_steps: int, per_period: int = 16) -> np.ndarray:
    """Steps at which to draw the schedule on a log-step axis: dense through the first period (wide on a log
    axis), then `per_period` points a period, so that every cosine period shows however long the run."""
    first = np.unique(np.round(np.geomspace(1, min(total_steps, 2 * COSINE_T_MAX), 256)))
    later = np.arange(2 * COSINE_T_MAX, total_steps + 1, 2 * COSINE_T_MAX / per_period)
    return np.unique(np.concatenate([first, np.round(later), [total_steps]])).astype(np.int64)


def device_problem(name: str) -> str | None:
    """Why this machine cannot train on the device named, else None."""
    if name == "cuda" and not torch.cuda.is_available():
        return "device must be auto or cpu on this machine (it has no CUDA GPU), got 'cuda'"
    return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available on this machine")
    return torch.device(name)


# Measured on a 2-core CPU (benchmarks/bench_sweep.py): six quick-scale runs stacked train 1.1x faster
# than one after another; at paper shapes (batch 1024 or 8192) they break even (1.0x), while holding six
# runs' activations at once (6 x 32 MiB per tensor at batch 8192).
MAX_BATCHED_ACTIVATIONS = 1 << 19  # batch_size * max(k, N) per run
# A GPU is far from full with one paper-shape run (benchmarks/bench_gpu.py): stacking fills it.
MAX_BATCHED_ACTIVATIONS_CUDA = 1 << 24


def trains_on_cuda(config: RunConfig) -> bool:
    """Whether a run of this config would train on a CUDA GPU here (device "cuda", or "auto" with one present)."""
    return config.device == "cuda" or resolve_device(config.device).type == "cuda"


def batch_key(config: RunConfig) -> tuple:
    """Configs with equal keys can train as one batched job on the runs axis."""
    return tuple((k, v) for k, v in sorted(config.to_dict().items()) if k not in PER_RUN_FIELDS)


def worth_batching(config: RunConfig) -> bool:
    """Whether stacking runs of this shape saves time rather than costing memory bandwidth."""
    limit = MAX_BATCHED_ACTIVATIONS_CUDA if trains_on_cuda(config) else MAX_BATCHED_ACTIVATIONS
    return config.batch_size * max(config.n_neurons, config.n_features) <= limit


def max_runs_per_job(config: RunConfig) -> int:
    """How many runs of this config one stacked job may hold: together, the memory budget a single run is
    checked against (LAB_MEMORY_BUDGET_GIB)."""
    return max(1, memory_budget_bytes() // config.memory_estimate_bytes())


def batched_jobs(configs: list[RunConfig]) -> list[list[int]]:
    """Indices into `configs` grouped into jobs: batched jobs when only per-run fields vary and the shapes are
    small enough for batching to pay (`worth_batching`), each job within the memory budget (`max_runs_per_job`);
    else one job per run."""
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        key = batch_key(config) if worth_batching(config) else (i,)
        groups.setdefault(key, []).append(i)
    jobs = []
    for group in groups.values():
        size = max_runs_per_job(configs[group[0]])
        jobs.extend(group[start:start + size] for start in range(0, len(group), size))
    return jobs


@contextmanager
def matmul_precision(precision: str, device: torch.device) -> Iterator[None]:
    """CUDA float32 matmuls in TF32 while training at precision "tf32" or "bf16" (whose step leaves only the
    sampler's projections in float32: TF32 keeps more bits than the bf16 they are stored in); the process's
    setting is restored after, so metrics and other jobs stay in full fp32. CPU matmuls are always fp32."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32" if precision in ("tf32", "bf16") else "ieee"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """What the step's matmuls and (R, B, .) arrays compute in: bfloat16 at precision "bf16" on a CUDA GPU with
    bf16 units (compute capability 8.0 on: before, bf16 matmuls are emulated), else float32 (a CPU always
    computes in fp32, as for tf32)."""
    if precision != "bf16" or device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32


def is_log2_checkpoint(step_index: int) -> bool:
    """The paper keeps a model copy after step i whenever i + 1 is a power of two."""
    n = step_index + 1
    return n & (n - 1) == 0


@dataclass
class RunSnapshot:
    """One run's state at a snapshot."""

    loss: float  # mean squared-error loss over the steps since the previous snapshot
    lr: float
    mean_bias: float
    summary: SfaSummary
    sfa: np.ndarray  # (k, N) float32
    new_losses: np.ndarray  # per-step losses since the previous snapshot
    error: str | None = None


@dataclass
class Snapshot:
    step: int  # steps completed
    steps: int
    elapsed: float
    runs: list[RunSnapshot] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.step >= self.steps


class Trainer:
    """Trains one or more batch-compatible runs together; a single run is R = 1.

    On a CUDA device each step after the first few is a replay of one CUDA graph (`core.cuda_graph`);
    `cuda_graph=False` keeps every step eager.
    """

    def __init__(self, configs: list[RunConfig], cuda_graph: bool | None = None,
                 starts: list[RunWeights | None] | None = None, dtype: torch.dtype | None = None,
                 worlds: list[World | None] | None = None):
        """`starts` gives a continued run its starting weights (core.continuation), `worlds` the embedders they learnt
        with; None draws them from the seed. `dtype`
        overrides what the step computes in (`compute_dtype`), e.g. to test the GPU's bf16 path on a CPU."""
        if not configs:
            raise ValueError("at least one run config is needed")
        keys = {batch_key(c) for c in configs}
        if len(keys) != 1:
            raise ValueError("runs trained together must share every field except "
                             + ", ".join(sorted(PER_RUN_FIELDS)))
        self.configs = list(configs)
        base = configs[0]
        self.base = base
        self.device = resolve_device(base.device)
        self.step = 0
        self.elapsed = 0.0
        self._reported_step = 0
        self.generators = [torch.Generator(self.device).manual_seed(c.seed) for c in configs]
        # Stored as E.T contiguous (the sparse projection gathers its rows), viewed as E (m, N).
        self.embedders = [make_embedder(c.n_features, c.embed_dim, g).T.contiguous().T
                          for c, g in zip(configs, self.generators)]
        self.output_embedders: list[torch.Tensor | None] = [
            make_embedder(c.n_features, c.embed_dim, g).T.contiguous().T if c.task == "random_proj" else None
            for c, g in zip(configs, self.generators)
        ]
        for c, g in zip(configs, self.generators):
            if c.init_variant:  # the world (embedders) is the seed's; the start and the samples the variant's
                g.manual_seed(variant_seed(c.seed, c.init_variant))
        # drawn even for a given start: the generator then stands where a fresh run's would for the samples
        initial = [init_weights(c.embed_dim, c.n_neurons, c.output_dim, c.init_bias, g)
                   for c, g in zip(configs, self.generators)]
        for r, start in enumerate(starts or []):
            if start is not None:
                initial[r] = RunWeights(*(t.to(self.device, torch.float32) for t in start.tensors()))
        for r, world in enumerate(worlds or []):  # a continued run's parent's embedders, as its weights learnt them
            if world is not None:
                self.embedders[r] = world[0].to(self.device, torch.float32).T.contiguous().T
                if world[1] is not None and self.output_embedders[r] is not None:
                    self.output_embedders[r] = world[1].to(self.device, torch.float32).T.contiguous().T
        # One stacked tensor per parameter, each run's parameters views into it: the step reads all runs
        # without copying. Every run trains with StackedLamb, the library's LAMB with a trust ratio per run
        # (tested equal to it): a run alone then trains bit for bit as it does in a batch (with the library's
        # own, the two drifted apart from rounding, into other basins), and graphs can take it (it reads its step
        # size from a device tensor). On one run it is as fast as the library's (benchmarks/RESULTS.md).
        self.w1, self.b1, self.w2 = (torch.stack(ts) for ts in zip(*(w.tensors() for w in initial)))
        self.weights = [RunWeights(self.w1[r], self.b1[r], self.w2[r]) for r in range(len(configs))]
        self.grads = Gradients.like(self.w1, self.b1, self.w2)
        self.graphing = graphs_wanted(self.device) if cuda_graph is None else cuda_graph and self.device.type == "cuda"
        self._graph: StepGraph | None = None
        self._eager_steps = 0
        self.dtype = dtype or compute_dtype(base.precision, self.device)
        self._workspace: Workspace | None = None
        self._skipped_dead = False  # a restored checkpoint's, until the workspace that carries it exists
        self.samplers = [task_sampler(c.task, c.n_features, c.eps, c.sample_kind, self.device) for c in configs]
        self.w1.grad, self.b1.grad, self.w2.grad = self.grads.w1, self.grads.b1, self.grads.w2
        self.optimizer = StackedLamb([self.w1, self.b1, self.w2], [c.lr for c in configs])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=COSINE_T_MAX,
                                                                    eta_min=0.0)
        l1 = torch.tensor([c.l1_reg for c in configs], device=self.device)
        self.l1 = l1 if bool((l1 > 0).any()) else None
        factors = [1.0 - c.bias_decay * c.lr for c in configs]
        self.bias_factors = (torch.tensor(factors, device=self.device).unsqueeze(1)
                             if any(f != 1.0 for f in factors) else None)
        # Read by the step on the device, so that a CUDA graph of it stays valid at every step: the factor
        # becomes 1 (an exact no-op) after the first half; the index is where the step writes its loss.
        self._bias_factor_now = None if self.bias_factors is None else self.bias_factors.clone()
        self._step_index = torch.zeros(1, dtype=torch.long, device=self.device)
        self._sync_bias_factor()
        self.losses = torch.zeros(len(configs), base.steps, device=self.device)
        self.log2_models: list[list[dict[str, torch.Tensor]]] = [[] for _ in configs]
        self.errors: list[str | None] = [None] * len(configs)
        # the first step whose loss (or, by then, weights) was not finite: the weights saved before it are kept
        self.diverged_at: list[int | None] = [None] * len(configs)
        self._stacked_embedders = torch.stack(self.embedders)
        # Finding dead neurons reads a count back to the host: on a GPU that would stall the queued steps.
        self.skip_dead_neurons = (self.device.type == "cpu" and self.dtype == torch.float32
                                  and base.batch_size * base.n_neurons * base.output_dim >= MIN_WORK_TO_SKIP_DEAD)

    @property
    def n_runs(self) -> int:
        return len(self.configs)

    @property
    def steps(self) -> int:
        return self.base.steps

    def _device_step(self) -> None:
        """One step's work on the device: sample, forward and backward, LAMB, bias decay, record the loss.

        Nothing here depends on Python state that changes between steps (a CUDA graph replays it as is),
        except the dead-neuron look-up, which runs on the CPU only.
        """
        base, ws = self.base, self.workspace
        for r, (sampler, generator) in enumerate(zip(self.samplers, self.generators)):
            sample_task_batch(base.task, base.batch_size, sampler, generator, self.embedders[r],
                              self.output_embedders[r], x_out=ws.x[r], target_out=ws.target[r])
        with torch.no_grad():
            squared_error = squared_error_and_gradients(ws, self.w1, self.b1, self.w2, base.nonlinearity,
                                                        self.l1, self.grads, skip_dead_neurons=self._look_for_dead())
            self.optimizer.step()
            if self._bias_factor_now is not None:
                self.b1.mul_(self._bias_factor_now)
            self.losses.index_copy_(1, self._step_index, squared_error.unsqueeze(1))
            self._step_index.add_(1)

    @property
    def workspace(self) -> Workspace:
        """The batch's arrays, allocated at the first step: a trainer built only to write run files from a
        checkpoint (a stop saved while the workers train) needs none, and they are most of a job's memory."""
        if self._workspace is None:
            base = self.base
            self._workspace = Workspace.allocate(len(self.configs), base.batch_size, base.embed_dim, base.n_neurons,
                                                 base.output_dim, self.device, self.dtype)
            self._workspace.skipped_dead = self._skipped_dead
        return self._workspace

    def _sync_bias_factor(self) -> None:
        """The decay factor the next step applies: each run's in the first half, 1 (an exact no-op) after."""
        if self._bias_factor_now is None:
            return
        if self.step < self.steps // 2:
            self._bias_factor_now.copy_(self.bias_factors)
        else:
            self._bias_factor_now.fill_(1.0)

    def _train_step(self) -> None:
        if self.graphing and self._graph is None and self._eager_steps >= WARMUP_STEPS:
            self._graph = StepGraph(self._device_step, self.generators)
        if self._graph is not None:
            self.optimizer.sync_rate()
            self._graph.replay()
        elif self.graphing:
            on_side_stream(self._device_step)
            self._eager_steps += 1
        else:
            self._device_step()
        self.scheduler.step()
        if is_log2_checkpoint(self.step):
            for r, w in enumerate(self.weights):
                self.log2_models[r].append(paper_state_dict(w))
        self.step += 1
        if self.step == self.steps // 2:
            self._sync_bias_factor()

    def _look_for_dead(self) -> bool:
        # Neurons die and revive slowly: while most are live, looking every few steps finds nearly all the savings.
        return self.skip_dead_neurons and (self.workspace.skipped_dead or self.step % DEAD_NEURON_CHECK_EVERY == 0)

    def advance(self, n_steps: int) -> None:
        """Train up to n_steps more (stopping at the end of the run)."""
        started = time.perf_counter()
        with matmul_precision(self.base.precision, self.device):
            for _ in range(min(n_steps, self.steps - self.step)):
                self._train_step()
        if self.device.type == "cuda":  # a GPU runs behind the host: count the time its queued steps take
            torch.cuda.synchronize(self.device)
        self.elapsed += time.perf_counter() - started

    def where(self) -> str:
        """Where this job trains, for people: the GPU's name and the precision, or the CPU's threads."""
        asked = self.base.precision
        # a precision the hardware lacks falls back to fp32: say so, and what it needs
        fell_back = asked == "bf16" and self.dtype == torch.float32
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            return f"{name}, fp32 (bf16 needs compute capability 8.0 or newer)" if fell_back else f"{name}, {asked}"
        threads = torch.get_num_threads()
        note = f", fp32 ({asked} needs a CUDA GPU)" if asked == "tf32" or fell_back else ""
        return f"CPU, {threads} thread{'' if threads == 1 else 's'}{note}"

    def current_lrs(self) -> list[float]:
        """Each run's scheduled learning rate (StackedLamb's group rate is a factor on every run's)."""
        rate = self.optimizer.param_groups[0]["lr"]
        return [c.lr * rate for c in self.configs]

    def last_step_lrs(self) -> list[float]:
        """Each run's learning rate in the step just taken (before any, the first step's): what a snapshot at
        this step reports, beside the losses of the steps it covers. CosineAnnealingLR's closed form."""
        return [float(scheduled_lr(c.lr, max(1, self.step))) for c in self.configs]

    def sfa(self) -> np.ndarray:
        """(R, k, N) single-feature activations of the current weights."""
        return single_feature_activations(self.w1, self.b1, self._stacked_embedders,
                                          self.base.nonlinearity).float().cpu().numpy()

    def snapshot(self) -> Snapshot:
        """Metrics of every run now, with the per-step losses since the previous snapshot."""
        start, end = self._reported_step, self.step
        chunk = self.losses[:, start:end].cpu().numpy()
        sfa = self.sfa()
        lrs = self.last_step_lrs()
        # Weights are checked too: a GPU's fused ReLU may map a NaN pre-activation to 0, so a run whose first
        # layer went NaN can show a finite loss there.
        finite_weights = torch.stack([torch.isfinite(t).flatten(1).all(1) for t in (self.w1, self.b1, self.w2)])
        finite_weights = finite_weights.all(0).cpu().numpy()
        hint = "; SoLU overflows for large inputs" if self.base.nonlinearity == "solu" else ""
        runs = []
        for r in range(self.n_runs):
            if self.errors[r] is None and not np.isfinite(chunk[r]).all():
                index = int(np.argmin(np.isfinite(chunk[r])))
                self.diverged_at[r] = start + index + 1  # losses[i] is step i + 1's
                self.errors[r] = (f"loss became {chunk[r][index]} at step {start + index + 1}: training diverged "
                                  f"(lower the learning rate{hint})")
            elif self.errors[r] is None and not finite_weights[r]:
                self.diverged_at[r] = end + 1  # the weights after step `end` are not finite; the copies are checked
                self.errors[r] = (f"weights became NaN or infinite by step {end}: training diverged "
                                  f"(lower the learning rate{hint})")
            runs.append(RunSnapshot(
                loss=float(chunk[r].mean()) if chunk.shape[1] else float("nan"),
                lr=lrs[r],
                mean_bias=float(self.weights[r].b1.detach().mean()),
                summary=SfaSummary.of(sfa[r]),
                sfa=sfa[r],
                new_losses=chunk[r].copy(),
                error=self.errors[r],
            ))
        self._reported_step = end
        return Snapshot(step=self.step, steps=self.steps, elapsed=self.elapsed, runs=runs)

    def final_loss(self, run: int) -> float | None:
        """The loss every view reports (core.metrics.final_loss), over the steps trained so far."""
        return final_loss(self.losses[run, :self.step])

    # --- checkpoints: everything needed to continue exactly where training stopped ---
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "reported_step": self._reported_step,
            "configs": [c.to_dict() for c in self.configs],
            "weights": [{k: v.detach().cpu().clone() for k, v in paper_state_dict(w).items()}
                        for w in self.weights],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "losses": self.losses[:, :self.step].cpu().clone(),
            "log2_models": [[{k: v.cpu() for k, v in m.items()} for m in models] for models in self.log2_models],
            "errors": list(self.errors),
            "diverged_at": list(self.diverged_at),
            # which path the next step takes (skipping dead neurons or not) changes its rounding
            "skipped_dead": self._skipped_dead if self._workspace is None else self._workspace.skipped_dead,
            "device_type": self.device.type,
            "optimizer_kind": "stacked",
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [RunConfig(**c) for c in state["configs"]] != self.configs:
            # e.g. a run of the job deleted before checkpoints named their runs: train the rest again, not fail them
            raise IncompatibleCheckpoint("it belongs to a different set of runs")
        # Checkpoints from before these keys were CPU ones, with the library's LAMB for a single run.
        written_on = state.get("device_type", "cpu")
        if written_on != self.device.type:  # a CPU and a CUDA generator's states do not translate
            raise IncompatibleCheckpoint(f"it was written on the {written_on} and this worker trains on the "
                                         f"{self.device.type}, whose random generator cannot take its state")
        kind = state.get("optimizer_kind", "library" if self.n_runs == 1 else "stacked")
        optimizer_state, scheduler_state = state["optimizer"], state["scheduler"]
        if kind == "library" and self.n_runs == 1:  # a single run paused before every run took StackedLamb
            try:
                optimizer_state, scheduler_state = stacked_from_library(
                    optimizer_state, scheduler_state, self.optimizer.state_dict(), self.configs[0].lr)
            except (KeyError, IndexError, TypeError, AttributeError) as err:
                raise IncompatibleCheckpoint(f"its library LAMB state cannot be read: {err!r}") from err
        elif kind != "stacked":
            raise IncompatibleCheckpoint(f"its optimizer ({kind} LAMB) is not this engine's (stacked)")
        if not moments_fit(optimizer_state, [self.w1, self.b1, self.w2]):
            # torch's load_state_dict takes moments of any shape: they would fail, or broadcast, at the first step
            raise IncompatibleCheckpoint("its optimizer state does not fit this engine: its LAMB moments have "
                                         "other shapes than these runs' weights")
        try:  # first, so that a checkpoint that does not fit leaves this trainer untouched
            self.optimizer.load_state_dict(optimizer_state)
        except ValueError as err:  # e.g. a batched job saved when each run had its own LAMB tensors
            raise IncompatibleCheckpoint(f"its optimizer state does not fit this engine: {err}") from err
        with torch.no_grad():
            for w, saved in zip(self.weights, state["weights"]):
                w.w1.copy_(saved["0.weight"])
                w.b1.copy_(saved["0.bias"])
                w.w2.copy_(saved["2.weight"])
        self.scheduler.load_state_dict(scheduler_state)
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self._reported_step = int(state["reported_step"])
        self.losses.zero_()
        self.losses[:, :self.step] = state["losses"].to(self.device)
        self.log2_models = [[{k: v.to(self.device) for k, v in m.items()} for m in models]
                            for models in state["log2_models"]]
        self.errors = list(state["errors"])
        self.diverged_at = state.get("diverged_at") or [diverged_step(self.losses[r, :self.step], self.step)
                                                        if error else None for r, error in enumerate(self.errors)]
        self._skipped_dead = bool(state.get("skipped_dead", False))
        if self._workspace is not None:
            self._workspace.skipped_dead = self._skipped_dead
        self._step_index.fill_(self.step)
        self._sync_bias_factor()
        self._graph, self._eager_steps = None, 0  # the loaded optimizer state is in new tensors: capture again


def paper_state_dict(weights: RunWeights) -> dict[str, torch.Tensor]:
    """nn.Sequential(Linear, act, Linear) key names, as the paper code saves its models."""
    return {"0.weight": weights.w1.detach().clone(), "0.bias": weights.b1.detach().clone(),
            "2.weight": weights.w2.detach().clone()}


def diverged_step(losses: torch.Tensor, trained: int) -> int:
    """Where a run that diverged did, for a checkpoint written before it was kept: its first non-finite loss's step,
    else (its weights went first) the step after those trained."""
    bad = (~torch.isfinite(losses)).nonzero()
    return int(bad[0]) + 1 if len(bad) else trained + 1


def next_snapshot_step(step: int, every: int) -> int:
    """The step of the next snapshot after `step`: every `every` steps, and at each power of 2 before the first
    (the log-step curves then start at step 1, where the bias starts its move from its init, not at `every`)."""
    boundary = (step // every + 1) * every
    return min(boundary, 1 << step.bit_length()) if step < every else boundary


def iterate_training(trainer: Trainer, snapshot_every: int | None = None,
                     max_seconds: float | None = None) -> Iterator[Snapshot]:
    """Yield a snapshot at next_snapshot_step's steps (and at least every `max_seconds`), and at the end."""
    every = snapshot_every or trainer.base.snapshot_every
    chunk = 1 if max_seconds is not None else every
    last = time.monotonic()
    while trainer.step < trainer.steps:
        target = next_snapshot_step(trainer.step, every)
        trainer.advance(min(chunk, target - trainer.step))
        now = time.monotonic()
        at_boundary = trainer.step == target or trainer.step >= trainer.steps
        if at_boundary or (max_seconds is not None and now - last >= max_seconds):
            last = now
            yield trainer.snapshot()


def train(config: RunConfig) -> Iterator[Snapshot]:
    """Train one run from scratch, yielding snapshots; raises TrainingDiverged on a NaN/inf loss."""
    trainer = Trainer([config])
    for snap in iterate_training(trainer):
        if snap.runs[0].error:
            raise TrainingDiverged(snap.runs[0].error)
        yield snap
