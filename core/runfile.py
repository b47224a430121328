"""The run file: a dict saved with torch.save that loads with weights_only=True and carries the
paper code's key names, so notebooks written for the paper's runs can read ours."""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from core.config import RunConfig, config_from_dict
from core.metrics import SfaSummary, final_loss, single_feature_activations
from core.train import LOSS_RECORD_EVERY, Trainer, paper_state_dict


def run_metrics(trainer: Trainer, run: int, model: dict[str, torch.Tensor], steps: int) -> dict[str, Any]:
    """The metrics of `model`, the run's weights after `steps` steps (its current ones, or a diverged run's last finite
    copy), with the loss every view reports over those steps."""
    if trainer.diverged_at[run] is None:  # its current weights: the SFA its live metrics came from, on its device
        sfa = trainer.sfa()[run]
    else:
        sfa = single_feature_activations(model["0.weight"].float()[None], model["0.bias"].float()[None],
                                         trainer.embedders[run].float().cpu()[None],
                                         trainer.configs[run].nonlinearity)[0].numpy()
    summary = SfaSummary.of(sfa)
    metrics: dict[str, Any] = {
        "final_loss": final_loss(trainer.losses[run, :steps]),
        "mono_ratio": summary.mono_ratio,
        "mono_neurons": summary.mono_neurons,
        "positive_mono_ratio": summary.positive_mono_ratio,
        "nearly_mono_neurons": summary.nearly_mono_neurons,
        "dead_neurons": summary.dead_neurons,
        "mean_bias": float(model["0.bias"].mean()),
        "steps_trained": steps,
        "seconds": trainer.elapsed,
    }
    if trainer.diverged_at[run] is not None:
        metrics["error"] = trainer.errors[run]
        metrics["diverged_at"] = trainer.diverged_at[run]
    return metrics


def kept_weights(trainer: Trainer, run: int) -> tuple[int, list[dict[str, torch.Tensor]]] | None:
    """The steps trained and the log2 copies a run file keeps: all of them for a healthy run; for one that diverged,
    those whose next step's loss was still finite, the last of them standing as its final weights (so that it can be
    inspected, and continued from an early step with a lower learning rate: a loss that runs away takes many steps to
    overflow); None when it diverged before any were saved."""
    copies = [{k: v.cpu() for k, v in m.items()} for m in trainer.log2_models[run]]
    bad = trainer.diverged_at[run]
    if bad is None:
        return trainer.step, copies
    good = []  # copy i holds the weights after step 2**i, which gave step 2**i + 1's loss
    for i, model in enumerate(copies):
        if 2**i + 1 >= bad or not all(torch.isfinite(t).all() for t in model.values()):
            break
        good.append(model)
    return (2 ** (len(good) - 1), good) if good else None


def build_run_file(trainer: Trainer, run: int = 0) -> dict[str, Any] | None:
    """The paper-compatible record of one run of a trainer; a diverged run's holds the run up to its last finite
    weights (`kept_weights`, None if it has none) and says where it diverged (metrics' `error`, `diverged_at`)."""
    kept = kept_weights(trainer, run)
    if kept is None:
        return None
    steps, log2_models = kept
    diverged = trainer.diverged_at[run] is not None
    final = log2_models[-1] if diverged else {k: v.cpu() for k, v in paper_state_dict(trainer.weights[run]).items()}
    config = trainer.configs[run]
    losses = trainer.losses[run, :steps].cpu()
    setup: dict[str, Any] = {
        "N": config.n_features, "m": config.embed_dim, "k": config.n_neurons, "eps": config.eps,
        "learning_rate": config.lr, "batch_size": config.batch_size, "task": config.task,
        "decay": config.bias_decay, "reg": config.l1_reg,
        "fixed_embedder": trainer.embedders[run].cpu(),
    }
    if trainer.output_embedders[run] is not None:
        setup["output_embedder"] = trainer.output_embedders[run].cpu()
    return {
        "losses": [float(v) for v in losses[::LOSS_RECORD_EVERY]],
        "final_model": final,
        "log2_spaced_models": log2_models,
        "setup": setup,
        "k": config.n_neurons, "learning_rate": config.lr, "initial_bias": config.init_bias,
        "nonlinearity": config.nonlinearity, "task": config.task, "decay": config.bias_decay,
        "eps": config.eps, "m": config.embed_dim, "N": config.n_features, "reg": config.l1_reg,
        "sample_kind": config.sample_kind, "log2_batch_size": math.log2(config.batch_size),
        "log2_training_steps": math.log2(config.steps),
        "config": config.to_dict(),
        "metrics": run_metrics(trainer, run, final, steps),
        "loss_history": losses,
        # what computed it: a precision the hardware lacks (bf16 on a CPU) trains in fp32, and says so here
        "trained_on": trainer.where(),
    }


def save_run_file(record: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(record, tmp)
    tmp.replace(path)
    return path


class RunFileError(ValueError):
    """A run file that is truncated, corrupt or not one of ours."""


def load_run_file(path_or_buffer: Any) -> dict[str, Any]:
    """Load without pickle (weights_only=True); raise RunFileError with a clear reason if unreadable."""
    try:
        record = torch.load(path_or_buffer, weights_only=True, map_location="cpu")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:  # never opened
        raise RunFileError(f"not a readable run file: {source_name(path_or_buffer)}: {err.strerror or err}") from err
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise RunFileError(f"{source_name(path_or_buffer)} is not a run file: {load_failure(err)}") from err
    missing = [k for k in ("final_model", "setup", "config") if not isinstance(record, dict) or k not in record]
    if missing:
        raise RunFileError(f"not a run file: missing {', '.join(missing)}")
    check_weights(record)
    check_provenance(record)
    return record


def check_provenance(record: dict[str, Any]) -> None:
    """Raise RunFileError unless the optional metrics and started_from entries have the shapes this code writes: a
    continuation reads them after it trained, when failing would lose the run it trained."""
    metrics, start = record.get("metrics", {}), record.get("started_from")
    if not isinstance(metrics, dict):
        raise RunFileError(f"not a run file: its metrics are {type(metrics).__name__}, not a table")
    if start is not None and not isinstance(start, dict):
        raise RunFileError(f"not a run file: its started_from is {type(start).__name__}, not a table")
    counts = [("steps_trained", metrics.get("steps_trained"))]
    counts += [(f"started_from {key}", start.get(key)) for key in ("offset", "step")] if start else []
    for name, value in counts:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise RunFileError(f"not a run file: its {name} is {value!r}, not a whole number of steps")


def source_name(path_or_buffer: Any) -> str:
    return str(path_or_buffer) if isinstance(path_or_buffer, (str, os.PathLike)) else "the file"


def load_failure(err: Exception) -> str:
    """Why torch.load refused a file, in a line. Torch's own text is pages long and advises weights_only=False,
    which would run whatever code a foreign file carries: never pass that advice on."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError):
        if found := re.search(r"GLOBAL (\S+)", text):
            return (f"it holds a Python object ({found.group(1)}), which no run file has; not loaded, since loading "
                    "it could run code")
        return "it is not a file that torch.save wrote"
    if isinstance(err, EOFError):
        return "it is empty or cut short"
    if "zip archive" in text or isinstance(err, OSError):  # a cut zip reads past its end: "Invalid argument"
        return "it is truncated or corrupt (not a whole zip archive)"
    first_line = text.strip().splitlines()[0][:200] if text.strip() else ""
    if not first_line or "weights_only" in text:
        return f"torch.load could not read it ({type(err).__name__})"
    return f"{type(err).__name__}: {first_line}"


def check_weights(record: dict[str, Any]) -> None:
    """Raise RunFileError unless every model the file keeps has the three tensors its config's shapes call for,
    and its setup the embedders, each dense, floating point and finite in float32: a hand-made or foreign file
    must be refused on loading, not fail mid-training."""
    config = record["config"]  # its sizes only: the whole config is config_of's to check (a budget may refuse it)
    try:
        k, m, n = (int(config[name]) for name in ("n_neurons", "embed_dim", "n_features"))
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"not a run file: its config lacks its sizes ({err})") from err
    out = m if config.get("task") == "random_proj" else n
    shapes = {"0.weight": (k, m), "0.bias": (k,), "2.weight": (out, k)}
    log2_models = record.get("log2_spaced_models", [])
    if not isinstance(log2_models, list):
        raise RunFileError("not a run file: log2_spaced_models is not a list")
    for where, model in [("final_model", record["final_model"])] + [
            (f"log2_spaced_models[{i}]", m) for i, m in enumerate(log2_models)]:
        if not isinstance(model, dict):
            raise RunFileError(f"not a run file: {where} is not a set of weights")
        for name, shape in shapes.items():
            tensor = model.get(name)
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "missing"
                raise RunFileError(f"run file's {where} has no {name} of shape {shape} (its config's sizes), got {got}")
            if problem := tensor_problem(tensor):
                raise RunFileError(f"run file's {where}: {name} {problem}")
    setup = record.get("setup")
    # the world its weights learnt in, which a continued run trains in (core.continuation.world_of)
    for name, shape in (("fixed_embedder", (m, n)), ("output_embedder", (m, n))):
        tensor = setup.get(name) if isinstance(setup, dict) else None
        if name == "output_embedder" and tensor is None and config.get("task") != "random_proj":
            continue  # only random_proj has one; without it a continued run would draw another (world_of)
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "missing"
            raise RunFileError(f"run file's setup has no {name} of shape {shape} (its config's sizes), got {got}")
        if problem := tensor_problem(tensor):
            raise RunFileError(f"run file's setup: {name} {problem}")


def tensor_problem(tensor: torch.Tensor) -> str | None:
    """Why a saved weight or embedder cannot be trained from, else None. The engine trains in dense float32: a
    sparse tensor fails mid-check, an int or complex one is cast (losing its fraction or imaginary part), and a
    float64 value beyond float32's range becomes inf, which reads as a run diverging at step 0."""
    if tensor.layout != torch.strided:
        return f"is {str(tensor.layout).removeprefix('torch.')}, not a dense tensor"
    if not tensor.is_floating_point():
        return (f"is {str(tensor.dtype).removeprefix('torch.')}, not floating point "
                "(float16, bfloat16, float32 or float64)")
    if not torch.isfinite(tensor.float()).all():
        return "is not finite (NaN or inf) in float32, which training computes in"
    return None


def config_of(record: dict[str, Any]) -> RunConfig:
    config, errors = config_from_dict(record["config"])
    if errors:
        raise RunFileError(f"run file has an invalid config: {errors}")
    return config
