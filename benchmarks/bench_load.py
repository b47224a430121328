"""Bounded load test on 127.0.0.1: 50 concurrent clients poll the API and the live data for 30 s
while 2 runs train; reports requests, errors and latency percentiles.

    .venv/bin/python -m benchmarks.bench_load [--clients 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from tests.servers import free_port, http_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        app = subprocess.Popen([sys.executable, "run_app.py", "--port", str(port), "--data-dir", data,
                                "--workers", "2", "--threads", "1"], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    http_json(base + "/api/runs")
                    break
                except OSError:
                    time.sleep(0.1)
            runs = [http_json(base + "/api/runs", {"preset": p})["id"]
                    for p in ("quick-zero-bias", "quick-negative-bias")]
            paths = [f"/api/runs/{runs[0]}", f"/api/runs/{runs[1]}/history", "/api/runs", "/"]
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            deadline = time.monotonic() + args.seconds

            def client(i: int) -> None:
                n = i
                while time.monotonic() < deadline:
                    path = paths[n % len(paths)]
                    n += 1
                    started = time.perf_counter()
                    try:
                        urllib.request.urlopen(base + path, timeout=30).read()
                        elapsed = time.perf_counter() - started
                        with lock:
                            latencies.append(elapsed)
                    except Exception as err:  # every failure counts, whatever its kind
                        with lock:
                            errors.append(f"{path}: {err}")

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            progress = [http_json(f"{base}/api/runs/{r}")["step"] for r in runs]
        finally:
            app.send_signal(signal.SIGINT)
            app.wait(timeout=60)
    ms = np.array(latencies) * 1000
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores)")
    print(f"{args.clients} clients for {args.seconds:.0f} s while 2 runs trained (steps reached: {progress}): "
          f"{len(ms)} requests ({len(ms) / args.seconds:.0f}/s), {len(errors)} errors")
    if len(ms):
        print(f"latency p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms, "
              f"max {ms.max():.0f} ms")
    for line in errors[:5]:
        print("error:", line)


if __name__ == "__main__":
    main()
