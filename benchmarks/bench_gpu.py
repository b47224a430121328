"""The GPU path at paper scale: steps/s with and without CUDA graphs, in fp32, TF32 and bf16, one run and a
stacked 6-value LR sweep, against the card's measured matmul roofline and the plain reference loop (under
autocast for bf16); a whole paper-scale run and a whole 6-value sweep end to end; and how far TF32 and
bf16 move the results.

    python -m benchmarks.bench_gpu [--budget 360] [--json results.json] [--only single sweep ...]

Needs a CUDA GPU. Sections run in order of importance and stop starting new ones once `--budget`
seconds have passed, so that the script fits a short lease.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

from benchmarks.bench_engine import matmul_flops, reference_step_fn, roofline_step_fn
from core.metrics import SfaSummary
from core.presets import LR_VALUES, PAPER_BASE, PAPER_STEPS, QUICK_PRESETS
from core.train import Trainer, compute_dtype, iterate_training, matmul_precision

PAPER = PAPER_BASE.replace(device="cuda", steps=1 << 20)  # long enough that timing never reaches its end
PRECISIONS = ("fp32", "tf32", "bf16")
RESULTS: dict[str, object] = {}


def as_precision(precision: str, step: Callable[[], None]) -> Callable[[], None]:
    """`step` with its matmuls in `precision`: bf16 the plain way, under autocast."""
    def run() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            step()
    return run


def timed(fn: Callable[[], None]) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def repeat_rate(step: Callable[[], None], count: int) -> float:
    """Calls per second of `step`, after two warm-up calls."""
    step()
    step()
    def loop() -> None:
        for _ in range(count):
            step()
    return count / timed(loop)


def trainer_rate(configs: list, graph: bool, steps: int) -> float:
    trainer = Trainer(configs, cuda_graph=graph)
    trainer.advance(8)  # warm-up and capture
    return steps / timed(lambda: trainer.advance(steps))


def report(key: str, text: str, value: object) -> None:
    RESULTS[key] = value
    print(text, flush=True)


def section_single_run() -> None:
    for precision in PRECISIONS:
        config = PAPER.replace(precision=precision)
        device = torch.device("cuda")
        with matmul_precision(precision, device):
            roofline = repeat_rate(roofline_step_fn(config, compute_dtype(precision, device)), 200)
            reference = repeat_rate(as_precision(precision, reference_step_fn(config)), 200)
        eager = trainer_rate([config], graph=False, steps=500)
        graphed = trainer_rate([config], graph=True, steps=1000)
        tflops = matmul_flops(config) * roofline / 1e12
        report(f"single_{precision}", (
            f"one paper run (batch 8192), {precision}: graphed {graphed:.0f} steps/s (2^17 steps in "
            f"{PAPER_STEPS / graphed:.0f} s), eager {eager:.0f} steps/s ({graphed / eager:.2f}x from graphs), "
            f"reference loop {reference:.0f} steps/s (graphed / reference {graphed / reference:.2f}x); "
            f"matmul roofline {roofline:.0f} steps/s ({tflops:.0f} TFLOP/s measured), graphed at "
            f"{100 * graphed / roofline:.0f}% of it"),
            {"graphed": graphed, "eager": eager, "reference": reference, "roofline": roofline,
             "roofline_tflops": tflops})


def section_profile(precision: str) -> None:
    """GPU time per kernel of graphed steps, as they run in training."""
    config = PAPER.replace(precision=precision)
    trainer = Trainer([config])
    trainer.advance(8)
    steps = 20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
        trainer.advance(steps)
        torch.cuda.synchronize()
    kernels = [e for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    if not kernels:
        print("the profiler recorded no kernels of the graph replays", flush=True)
        return
    total = sum(e.time_range.elapsed_us() for e in kernels) / steps
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + e.time_range.elapsed_us() / steps
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:16]
    lines = [f"  {us:7.1f} us  {name[:110]}" for name, us in top]
    report(f"profile_{precision}", f"kernels of one graphed {precision} paper step: {len(kernels) / steps:.0f}, "
           f"{total:.0f} us of "
           "GPU time; the largest:\n" + "\n".join(lines), {"kernels_per_step": len(kernels) / steps,
                                                            "gpu_us_per_step": total, "top": top})


def section_sweep() -> None:
    for precision in PRECISIONS:
        configs = [PAPER.replace(precision=precision, lr=lr, seed=i) for i, lr in enumerate(LR_VALUES)]
        stacked = trainer_rate(configs, graph=True, steps=200)
        single = RESULTS.get(f"single_{precision}", {}).get("graphed") or trainer_rate(configs[:1], True, 500)
        report(f"sweep_{precision}", (
            f"6-value LR sweep at paper scale, {precision}: stacked and graphed {stacked:.1f} steps/s "
            f"(2^17 steps in {PAPER_STEPS / stacked:.0f} s); one after another would take "
            f"{6 * PAPER_STEPS / single:.0f} s ({6 * stacked / single:.2f}x from stacking)"),
            {"stacked": stacked, "sequential_projected_s": 6 * PAPER_STEPS / single})


def whole_run(config, label: str) -> dict:
    """Train a run to the end through the snapshot loop the worker uses (SFA metrics at every snapshot)."""
    started = time.perf_counter()
    trainer = Trainer([config])
    snapshots = 0
    for snap in iterate_training(trainer):
        snapshots += 1
        last = snap
    seconds = time.perf_counter() - started
    summary = SfaSummary.of(last.runs[0].sfa)
    result = {"seconds": seconds, "final_loss": trainer.final_loss(0), "mono_ratio": summary.mono_ratio,
              "nearly_mono": summary.nearly_mono_neurons, "dead": summary.dead_neurons, "snapshots": snapshots}
    print(f"{label}: {seconds:.1f} s for {config.steps} steps with {snapshots} snapshots; final loss "
          f"{result['final_loss']:.4f}, mono {summary.mono_ratio:.3f} per feature, r > 0.9: "
          f"{summary.nearly_mono_neurons}, dead {summary.dead_neurons}", flush=True)
    return result


def section_whole_sweep(precision: str) -> None:
    """The paper's 6-value LR sweep trained to the end as one stacked job, through the worker's snapshot loop."""
    configs = [PAPER_BASE.replace(device="cuda", precision=precision, lr=lr) for lr in LR_VALUES]
    started = time.perf_counter()
    trainer = Trainer(configs)
    for snap in iterate_training(trainer):
        last = snap
    seconds = time.perf_counter() - started
    runs = []
    for r, config in enumerate(configs):
        summary = SfaSummary.of(last.runs[r].sfa)
        runs.append({"lr": config.lr, "final_loss": trainer.final_loss(r), "mono_ratio": summary.mono_ratio,
                     "nearly_mono": summary.nearly_mono_neurons, "dead": summary.dead_neurons})
    report(f"whole_sweep_{precision}", f"whole 6-value LR sweep at paper scale (2^17 steps each, stacked), "
           f"{precision}: {seconds:.1f} s; per lr (final loss, mono per feature, r > 0.9, dead): " + "; ".join(
               f"{r['lr']}: {r['final_loss']:.4f}, {r['mono_ratio']:.3f}, {r['nearly_mono']}, {r['dead']}"
               for r in runs), {"seconds": seconds, "runs": runs})


def section_norm_forms() -> None:
    """The squared error's reduction at a 6-run paper batch: one norm over each run's B x N values, or B row
    norms first (core.step); microseconds each."""
    for dtype in (torch.float32, torch.bfloat16):
        residual = torch.randn(6, 8192, 512, device="cuda").to(dtype)
        flat = repeat_rate(lambda r=residual: torch.linalg.vector_norm(r.view(6, -1), dim=1, dtype=torch.float32), 200)
        rows = repeat_rate(lambda r=residual: torch.linalg.vector_norm(
            torch.linalg.vector_norm(r, dim=2, dtype=torch.float32), dim=1), 200)
        report(f"norm_{dtype}", f"squared error of 6 x 8192 x 512 {dtype}: one norm per run {1e6 / flat:.1f} us, "
               f"row norms then run norms {1e6 / rows:.1f} us", {"flat_us": 1e6 / flat, "rows_us": 1e6 / rows})


def section_paper_run(precision: str) -> None:
    config = PAPER_BASE.replace(device="cuda", precision=precision)
    RESULTS[f"paper_run_{precision}"] = whole_run(config, f"whole paper-scale run (2^17 steps, batch 8192), "
                                                          f"{precision}, graphed")


def section_quick_precision() -> None:
    for name in ("quick-zero-bias", "quick-negative-bias", "quick-abs-negative-bias"):
        for precision in PRECISIONS:
            config = QUICK_PRESETS[name].config.replace(device="cuda", precision=precision)
            RESULTS[f"{name}_{precision}"] = whole_run(config, f"{name}, {precision}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=360.0, help="seconds after which no new section starts")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--only", nargs="+", help="these sections, in this order (default: all)")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"machine: {platform.node()}, {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    sections = {"single": section_single_run, "sweep": section_sweep, "norms": section_norm_forms,
                "paper_bf16": lambda: section_paper_run("bf16"),
                "whole_sweep_bf16": lambda: section_whole_sweep("bf16"),
                "profile_bf16": lambda: section_profile("bf16"), "quick": section_quick_precision,
                "paper_tf32": lambda: section_paper_run("tf32"), "profile_tf32": lambda: section_profile("tf32"),
                "paper_fp32": lambda: section_paper_run("fp32")}
    unknown = set(args.only or ()) - set(sections)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; there are {list(sections)}")
    for name in args.only or sections:
        if time.perf_counter() - started > args.budget:
            print("budget spent: later sections skipped", flush=True)
            break
        sections[name]()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(RESULTS, f, indent=1)


if __name__ == "__main__":
    main()
