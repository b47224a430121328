"""Continuing a finished run: a new run that starts from its final weights with settings changed.

The authors suggest moving a model between basins by changing its training (regularisation, a bias push): a
continued run trains a zero-bias run's polysemantic model on with L1 or bias decay, say, and shows whether it leaves
its basin. It keeps what the weights mean: their shapes and the world they were trained in (the parent's own
embedders, copied with its weights). The schedule and the optimiser's state start afresh, and so does the sample
stream: the seed's, from its beginning, as a fresh run of that seed draws it (the same batches, in order, that the
parent was trained on first; a run continued from step 64 sees its first 64 batches again).

`init_bias` is the constant added to every first-layer bias at the start (ALGORITHM.md, "Model"). A continued run
that changes it gets the difference added to its start's trained biases, so its `init_bias` stays the total
constant added since the fresh init: a bias push (`bias_push`).
"""

from __future__ import annotations

import io
from typing import Any

import torch

from core.config import RunConfig, shown, shown_value
from core.model import RunWeights, World

# Fields that fix the weights' shapes or the world (the seed's; its embedders are copied from the parent): the weights
# mean nothing without them.
KEPT_WITH_THE_WEIGHTS = ("task", "n_features", "embed_dim", "n_neurons", "seed")
# Fields that describe a fresh start, which a continued run does not have.
KEPT_AS_THE_START = ("init_variant",)
CONTINUABLE = ("done", "stopped")
# Not in a continued run's name: how often it is shown changes none of its numbers (and is capped to fit fewer steps)
NOT_NAMED = ("snapshot_every",)


class CannotContinue(RuntimeError):
    """The run has no saved weights to continue from (not finished, or stopped before any were saved)."""


def continuation_errors(parent_id: str, parent: RunConfig, config: RunConfig) -> dict[str, str]:
    """What `config` changes that a run continued from `parent`'s weights must keep, by field."""
    errors = {}
    for name in KEPT_WITH_THE_WEIGHTS + KEPT_AS_THE_START:
        kept, wanted = getattr(parent, name), getattr(config, name)
        if kept != wanted:
            why = ("the seed draws the embedder, the world its weights learnt" if name == "seed" else
                   "its weights have these shapes" if name in KEPT_WITH_THE_WEIGHTS else
                   "the run starts from its weights, not from a fresh init")
            errors[name] = (f"{name} must stay {shown_value(kept)} when continuing run {parent_id}, got "
                            f"{shown_value(wanted)}: {why}")
    return errors


def bias_push(parent: RunConfig, config: RunConfig) -> float:
    """What a run continued from `parent`'s weights with `config` adds to every first-layer bias at its start
    (rounded: -0.3, not the float difference's -0.30000000000000004)."""
    return round(config.init_bias - parent.init_bias, 12)


def total_bias_hint(parent_id: str, parent: RunConfig) -> str:
    """What an out-of-range `init_bias` message adds when continuing: the range bounds the total, not the push."""
    return f" (continuing, it is the total: run {parent_id}'s {shown_value(parent.init_bias)} plus the push)"


def push_text(push: float) -> str:
    """A bias push as labels, subtitles and tables write it: "biases pushed by -1"."""
    return f"biases pushed by {shown_value(push)}"


def pushed(weights: RunWeights, push: float) -> RunWeights:
    """`weights` with `push` added to every first-layer bias (a copy; the same tensors when there is none)."""
    return weights if push == 0 else RunWeights(weights.w1, weights.b1 + push, weights.w2)


def continued_label(parent_label: str, parent: RunConfig, config: RunConfig, step: int | None = None) -> str:
    """The continued run's name in the run list: its parent's (at the saved step it started from), and what
    changed."""
    changed = [push_text(bias_push(parent, config)) if name == "init_bias" else
               f"{name}={shown_value(value)}" for name, value in config.to_dict().items()
               if value != getattr(parent, name) and name not in NOT_NAMED]
    at = "" if step is None else f" at step {step}"
    return f"{parent_label or 'run'}{at} → " + (", ".join(changed) if changed else "continued")


def saved_steps(record: dict[str, Any]) -> list[int]:
    """The steps a run file keeps weights at besides its final ones: 1, 2, 4, ... (the paper's log2 models)."""
    return [2**i for i in range(len(record.get("log2_spaced_models", [])))]


def start_weights(record: dict[str, Any], step: int | None = None) -> RunWeights:
    """A run file's final weights, or those it saved after `step` (one of saved_steps)."""
    final_step = (record.get("metrics") or {}).get("steps_trained")
    if step is None or (step == final_step and not isinstance(step, bool) and step not in saved_steps(record)):
        model = record["final_model"]  # the last step asked for by number: its weights are the final ones
    elif isinstance(step, int) and not isinstance(step, bool) and step in saved_steps(record):
        model = record["log2_spaced_models"][step.bit_length() - 1]
    else:
        steps = saved_steps(record)
        saved = ", ".join(map(str, steps + ([final_step] if isinstance(final_step, int) and final_step not in steps
                                            else [])))
        raise ValueError(f"must be a step with saved weights ({saved}) or none for the final weights, "
                         f"got {shown(step)}")
    return RunWeights(model["0.weight"], model["0.bias"], model["2.weight"])


def steps_before(start: dict[str, Any] | None) -> int:
    """The steps trained before a run's first, along its whole chain (a continued run's parent may itself be one):
    where its curves go on from, beside its ancestors. Starts stored before the chain was counted give their step."""
    return 0 if not start else int(start.get("offset") or start.get("step") or 0)  # an old CLI file: step None


def world_of(record: dict[str, Any]) -> World:
    """The embedders a run file's weights learnt with. A continued run trains in them, not in ones drawn again
    from the seed: a CUDA generator draws other numbers than a CPU one, so a run trained on a GPU and continued
    on a CPU would otherwise be fed inputs its weights never saw."""
    setup = record["setup"]
    return setup["fixed_embedder"], setup.get("output_embedder")


def weights_to_bytes(weights: RunWeights, world: World | None = None) -> bytes:
    """A continued run's start as the store keeps it (torch.save of the tensors: loads with weights_only)."""
    buffer = io.BytesIO()
    tensors = {"w1": weights.w1, "b1": weights.b1, "w2": weights.w2}
    if world is not None:
        tensors["embedder"] = world[0]
        if world[1] is not None:
            tensors["output_embedder"] = world[1]
    torch.save(tensors, buffer)
    return buffer.getvalue()


def start_from_bytes(blob: bytes) -> tuple[RunWeights, World | None]:
    """The start a worker trains a continued run from (weights_to_bytes's inverse), and the embedders it trains in:
    None for a start stored before they were kept (drawn from the seed, as then)."""
    state = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    world = (state["embedder"], state.get("output_embedder")) if "embedder" in state else None
    return RunWeights(state["w1"], state["b1"], state["w2"]), world
