"""A training job's peak memory against `RunConfig.memory_estimate`, which the memory budget checks.

Each config trains in a fresh spawned process, as a worker does (`JobRunner` on a diskcache store, a
checkpoint at every snapshot, run files saved at the end). The peak resident-set growth over the process
before the job (imports, torch warmed up) is read from the kernel's high-water mark, reset just before.

    .venv/bin/python -m benchmarks.bench_memory
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import tempfile
import threading

from core.config import RunConfig

MIB = 2**20
CONFIGS = {
    "quick (N=128, m=16, k=256, batch 512)": (RunConfig(steps=512, snapshot_every=64), 1),
    "quick, 6 runs stacked": (RunConfig(steps=512, snapshot_every=64), 6),
    "paper (N=512, m=64, k=1024, batch 1024)": (
        RunConfig(n_features=512, embed_dim=64, n_neurons=1024, batch_size=1024, steps=64, snapshot_every=8), 1),
    "paper, batch 8192": (
        RunConfig(n_features=512, embed_dim=64, n_neurons=1024, batch_size=8192, steps=16, snapshot_every=4), 1),
    "many neurons (N=512, m=64, k=8192, batch 1024)": (
        RunConfig(n_features=512, embed_dim=64, n_neurons=8192, batch_size=1024, steps=64, snapshot_every=8), 1),
    "many features (N=4096, m=64, k=1024, batch 256)": (
        RunConfig(n_features=4096, embed_dim=64, n_neurons=1024, batch_size=256, steps=64, snapshot_every=8), 1),
    "paper run's log2 copies (N=512, m=64, k=1024, batch 64)": (
        RunConfig(n_features=512, embed_dim=64, n_neurons=1024, batch_size=64, steps=4096, snapshot_every=512), 1),
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_growth(config: RunConfig, runs: int) -> int:
    """Bytes the job's process grew to at its peak, over what it held before the job."""
    import torch

    from core.jobs import Lab, WorkerId
    from core.store import DiskStore
    from core.worker import JobRunner

    torch.set_num_threads(2)
    configs = [config.replace(device="cpu", lr=0.01 * (1 + r)) for r in range(runs)]
    with tempfile.TemporaryDirectory() as directory:
        lab = Lab(DiskStore(directory))
        warm = lab.submit(RunConfig(steps=2, snapshot_every=1, device="cpu"))  # torch's one-off allocations
        job_id, job = lab.claim(WorkerId.here())
        JobRunner(lab, job_id, job["runs"], threading.Event(), checkpoint_seconds=0.0).run()
        lab.delete(warm)
        lab.submit_group(configs) if runs > 1 else lab.submit(configs[0])
        job_id, job = lab.claim(WorkerId.here())
        before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM, the peak resident set
        JobRunner(lab, job_id, job["runs"], threading.Event(), checkpoint_seconds=0.0).run()
        assert all(lab.get(r)["status"] == "done" for r in job["runs"])
        return (_status_kib("VmHWM") - before) * 1024


def main() -> None:
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), device cpu")
    print("| config | estimate | measured peak growth | measured / estimate |")
    print("|---|---|---|---|")
    context = mp.get_context("spawn")
    for name, (config, runs) in CONFIGS.items():
        with context.Pool(1) as pool:  # a fresh process each: the peak of one config must not carry to the next
            measured = pool.apply(_peak_growth, (config, runs))
        estimate = runs * config.memory_estimate_bytes()
        print(f"| {name}, {config.steps} steps | {estimate / MIB:.0f} MiB | {measured / MIB:.0f} MiB | "
              f"{measured / estimate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
