"""A training step recorded once as a CUDA graph and replayed.

On a GPU a step is some forty small kernels, and at paper shapes the host takes about as long to
launch them one by one as the GPU takes to run them; a replay launches the whole step at once. What a
step reads that changes from step to step (where its loss is written, the learning-rate factor, the
bias-decay factor) lives in device tensors that the graph reads, and each run's random generator is
registered with the graph, so that every replay draws fresh samples: the ones an eager step would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

WARMUP_STEPS = 2  # eager steps on a side stream before capture: lazy initialisation (cuBLAS, optimizer state)


def graphs_wanted(device: torch.device) -> bool:
    """CUDA graphs on a CUDA device, unless LAB_CUDA_GRAPHS=0 (to compare, or to rule them out)."""
    return device.type == "cuda" and os.environ.get("LAB_CUDA_GRAPHS", "1") != "0"


def on_side_stream(step: Callable[[], None]) -> None:
    """Run `step` eagerly on a side stream, as torch's docs ask of the iterations before a capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)


class StepGraph:
    """`step` captured once; `replay` runs it again, on the current stream."""

    def __init__(self, step: Callable[[], None], generators: Sequence[torch.Generator]):
        self.graph = torch.cuda.CUDAGraph()
        for generator in generators:
            self.graph.register_generator_state(generator)
        with torch.cuda.graph(self.graph):
            step()

    def replay(self) -> None:
        self.graph.replay()
