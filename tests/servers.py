"""Real servers for tests, on 127.0.0.1 and free ports, stopped by the test that started them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: dict | None = None, timeout: float = 30) -> Any:
    """GET (or POST `body` as JSON) and decode the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class RedisServer:
    def __init__(self, directory: Path):
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: scripts/test installs Debian's redis-server (run it as root)"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(directory)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class CeleryWorker:
    """`celery -A core.distributed worker` in its own process group."""

    def __init__(self, redis_url: str, name: str, log: Path, **settings: str):
        env = {**os.environ, "LAB_REDIS_URL": redis_url, "LAB_THREADS": "1", "LAB_CHECKPOINT_SECONDS": "0.5",
               **settings}
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "core.distributed", "worker", "--pool", "prefork",
             "--concurrency", "1", "-Q", "lab", "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        try:
            family = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        os.killpg(self.process.pid, signal.SIGKILL) if self.process.poll() is None else None
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=10)
        self.log.close()
