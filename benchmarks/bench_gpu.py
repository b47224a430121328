"""The GPU path at paper scale: steps/s with and without CUDA graphs, fp32 and TF32, one run and a
stacked 6-value LR sweep, against the card's measured matmul roofline and the plain reference loop; a
whole paper-scale run end to end; and how far TF32 moves the results.

    python -m benchmarks.bench_gpu [--budget 360] [--json results.json]

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
from core.train import Trainer, iterate_training, matmul_precision

PAPER = PAPER_BASE.replace(device="cuda", steps=1 << 20)  # long enough that timing never reaches its end
RESULTS: dict[str, object] = {}


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
    for precision in ("fp32", "tf32"):
        config = PAPER.replace(precision=precision)
        device = torch.device("cuda")
        with matmul_precision(precision, device):
            roofline = repeat_rate(roofline_step_fn(config), 200)
            reference = repeat_rate(reference_step_fn(config), 200)
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


def section_profile() -> None:
    """GPU time per kernel of graphed TF32 steps, as they run in training."""
    config = PAPER.replace(precision="tf32")
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
    report("profile_tf32", f"kernels of one graphed TF32 paper step: {len(kernels) / steps:.0f}, {total:.0f} us of "
           "GPU time; the largest:\n" + "\n".join(lines), {"kernels_per_step": len(kernels) / steps,
                                                            "gpu_us_per_step": total, "top": top})


def section_sweep() -> None:
    for precision in ("fp32", "tf32"):
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


def section_paper_run(precision: str) -> None:
    config = PAPER_BASE.replace(device="cuda", precision=precision)
    RESULTS[f"paper_run_{precision}"] = whole_run(config, f"whole paper-scale run (2^17 steps, batch 8192), "
                                                          f"{precision}, graphed")


def section_quick_precision() -> None:
    for name in ("quick-zero-bias", "quick-negative-bias", "quick-abs-negative-bias"):
        for precision in ("fp32", "tf32"):
            config = QUICK_PRESETS[name].config.replace(device="cuda", precision=precision)
            RESULTS[f"{name}_{precision}"] = whole_run(config, f"{name}, {precision}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=360.0, help="seconds after which no new section starts")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"machine: {platform.node()}, {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    sections = [section_single_run, section_profile, section_sweep, lambda: section_paper_run("tf32"),
                section_quick_precision, lambda: section_paper_run("fp32")]
    for section in sections:
        if time.perf_counter() - started > args.budget:
            print("budget spent: later sections skipped", flush=True)
            break
        section()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(RESULTS, f, indent=1)


if __name__ == "__main__":
    main()
