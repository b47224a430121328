"""Steps per second of the engine vs a plain reference loop, and vs the machine's matmul roofline.

The reference is the straightforward PyTorch version of ALGORITHM.md, written here: dense Bernoulli
sampling, nn.Sequential, LAMB from pytorch-optimizer, one run at a time. The roofline is a training
step's matmul FLOPs divided by this machine's measured torch.mm throughput at the same shapes.
Two regimes per shape: zero bias, where every neuron is live (the dense work the roofline counts), and
init bias -1 with decay early on, where most neurons are dead (the engine leaves them out of the large
matmuls on the CPU, so there it can beat the dense roofline).

    .venv/bin/python -m benchmarks.bench_engine [--seconds 1] [--rounds 5] [--device cuda] [--precision tf32]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time

import torch

from core.config import PRECISIONS, RunConfig
from core.data import make_embedder
from core.presets import PAPER_STEPS
from core.stacked_lamb import paper_lamb
from core.train import Trainer, matmul_precision, resolve_device

SHAPES = {
    "quick (N=128, m=16, k=256, batch 512)": RunConfig(n_features=128, embed_dim=16, n_neurons=256, batch_size=512),
    "paper (N=512, m=64, k=1024, batch 1024)": RunConfig(n_features=512, embed_dim=64, n_neurons=1024,
                                                         batch_size=1024),
    "paper (N=512, m=64, k=1024, batch 8192)": RunConfig(n_features=512, embed_dim=64, n_neurons=1024,
                                                         batch_size=8192),
}

REGIMES = {
    "zero bias": {"init_bias": 0.0, "bias_decay": 0.0},
    "bias -1 with decay, early": {"init_bias": -1.0, "bias_decay": 0.12},
}


def reference_step_fn(config: RunConfig):
    """The plain loop: returns a function doing one training step."""
    torch.manual_seed(0)
    device = torch.device(config.device)
    n, m, k, b = config.n_features, config.embed_dim, config.n_neurons, config.batch_size
    embedder = make_embedder(n, m, torch.Generator().manual_seed(0)).to(device)
    model = torch.nn.Sequential(torch.nn.Linear(m, k), torch.nn.ReLU(), torch.nn.Linear(k, n, bias=False)).to(device)
    with torch.no_grad():
        model[0].bias += config.init_bias
    optimizer = paper_lamb(list(model.parameters()), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=512, eta_min=0)
    probs = torch.full((b, n), config.eps, device=device)

    def step() -> None:
        v = torch.rand(b, n, device=device) * torch.bernoulli(probs)
        out = model(v @ embedder.T)
        loss = ((out - v) ** 2).sum() / b
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model[0].bias *= 1 - config.bias_decay * config.lr

    return step


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def steps_per_second(step, seconds: float, device: str = "cpu") -> float:
    step()
    step()
    synchronize(device)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += 1
        if count % 8 == 0:  # a GPU queues work ahead: time what has finished
            synchronize(device)
    synchronize(device)
    return count / (time.perf_counter() - started)


def matmul_flops(config: RunConfig) -> float:
    return config.step_flops()


def roofline_step_fn(config: RunConfig, dtype: torch.dtype = torch.float32):
    """The step's six matmuls back to back with torch.mm at the same shapes (in `dtype`), nothing around them."""
    n, m, k, b = config.n_features, config.embed_dim, config.n_neurons, config.batch_size
    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=config.device, dtype=dtype)

    v, e = rand(b, n), rand(m, n)
    x, w1, a, w2, g = rand(b, m), rand(k, m), rand(b, k), rand(n, k), rand(b, n)

    def matmuls() -> None:
        torch.mm(v, e.T)
        torch.mm(x, w1.T)
        torch.mm(a, w2.T)
        torch.mm(g.T, a)
        torch.mm(g, w2)
        torch.mm(a.T, x)

    return matmuls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="for all three contenders (tf32 acts on CUDA only)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}, "
          f"device {where}, precision {args.precision}")
    for (name, config), (regime, changes) in itertools.product(SHAPES.items(), REGIMES.items()):
        config = config.replace(lr=0.01, device=device.type, precision=args.precision, **changes)
        trainer = Trainer([config.replace(steps=1 << 20)])
        contenders = {"reference": reference_step_fn(config), "engine": lambda trainer=trainer: trainer.advance(1),
                      "roofline": roofline_step_fn(config)}
        # Interleaved rounds: this VM's speed drifts by tens of percent over minutes, which would bias
        # ratios measured one contender after the other.
        rates = {key: [] for key in contenders}
        with matmul_precision(args.precision, device):
            for _ in range(args.rounds):
                for key, step in contenders.items():
                    rates[key].append(steps_per_second(step, args.seconds, device.type))
        ours, reference, roofline = (statistics.median(rates[key]) for key in ("engine", "reference", "roofline"))
        gflops = matmul_flops(config) * roofline / 1e9
        live = (trainer.workspace.pre[0] > 0).any(dim=0).float().mean().item()
        print(f"{name}, {regime} (live at the end: {100 * live:.0f}%): "
              f"engine {ours:.1f} steps/s, reference loop {reference:.1f} steps/s ({ours / reference:.2f}x); "
              f"matmul roofline {roofline:.1f} steps/s ({gflops:.0f} GFLOP/s measured), engine at "
              f"{100 * ours / roofline:.0f}% of it; at this rate 2^17 steps would take {PAPER_STEPS / ours:,.0f} s  "
              f"[medians of {args.rounds} interleaved rounds]")


if __name__ == "__main__":
    main()
