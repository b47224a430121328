"""Celery workers with a Redis broker and store: real servers on 127.0.0.1, stopped by each test."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from core.config import RunConfig
from core.distributed import Supervisor, lab_for
from tests.helpers import wait_until
from tests.servers import CeleryWorker, RedisServer

SMALL = RunConfig(n_features=16, embed_dim=4, n_neurons=24, eps=1 / 8, batch_size=32, steps=1500,
                  snapshot_every=100, device="cpu")


@pytest.fixture
def cluster(tmp_path):
    server = RedisServer(tmp_path)
    workers: list[CeleryWorker] = []
    lab = lab_for(server.url)
    supervisor = Supervisor(lab, every=1.0).start()

    def start_worker(name: str) -> CeleryWorker:
        worker = CeleryWorker(server.url, name, tmp_path / f"{name}.log")
        workers.append(worker)
        return worker

    yield lab, start_worker
    supervisor.stop()
    for worker in workers:
        worker.stop()
    server.stop()


def status(lab, run_id: str) -> str:
    return lab.get(run_id)["status"]


def test_two_workers_share_the_queue_and_finish_every_run(cluster):
    lab, start_worker = cluster
    workers = start_worker("w1"), start_worker("w2")
    run_ids = [lab.submit(SMALL.replace(seed=s)) for s in range(4)]
    wait_until(lambda: all(status(lab, r) == "done" for r in run_ids), timeout=180, message="all runs done")
    trainers = {lab.get(r)["trained_by"]["pid"] for r in run_ids}
    assert len(trainers) == 2, "both workers should have trained runs"
    for worker in workers:  # a user on the worker's machine sees that it connected and what it trained
        log = Path(worker.log.name).read_text()
        assert " ready." in log and "training job" in log
    history = lab.history(run_ids[0])
    assert np.array_equal(history["loss_steps"], np.arange(1, SMALL.steps + 1))
    assert lab.run_file(run_ids[0]) is not None
    # a run continued from another's weights: its start travels through Redis to whichever worker takes it
    child = lab.continue_run(run_ids[0], SMALL.replace(l1_reg=0.01, steps=200, snapshot_every=100))
    wait_until(lambda: status(lab, child) == "done", timeout=60, message="the continued run")
    assert np.mean(lab.history(child)["losses"][:16]) < 1.5 * lab.get(run_ids[0])["loss"]


def test_stop_and_pause_across_processes(cluster):
    lab, start_worker = cluster
    start_worker("w1")
    run_id = lab.submit(SMALL.replace(steps=200_000, snapshot_every=500))
    wait_until(lambda: lab.get(run_id)["step"] > 0, timeout=60, message="training on the worker")
    lab.pause(run_id)
    wait_until(lambda: status(lab, run_id) == "paused", timeout=5, message="pause")
    paused_at = lab.get(run_id)["step"]
    lab.resume(run_id)
    wait_until(lambda: lab.get(run_id)["step"] > paused_at + 200, timeout=60, message="resumed training")
    # a job that fails on its worker (its checkpoint unreadable there) is retried through Celery by resume
    lab.pause(run_id)
    wait_until(lambda: status(lab, run_id) == "paused", timeout=5, message="paused again")
    paused_at, job_id = lab.get(run_id)["step"], lab.get(run_id)["job"]
    good = lab.store.get(f"ckpt/{job_id}")
    lab.store.set(f"ckpt/{job_id}", b"not a checkpoint")
    lab.resume(run_id)
    wait_until(lambda: status(lab, run_id) == "failed", timeout=30, message="the job to fail")
    assert lab.get(run_id)["job_failed"]
    lab.store.set(f"ckpt/{job_id}", good)
    lab.resume(run_id)
    wait_until(lambda: lab.get(run_id)["step"] > paused_at + 200, timeout=60, message="retried training")
    assert lab.get(run_id)["error"] is None
    # stopped while paused: a Celery worker saves its run file from the checkpoint, no step further
    lab.pause(run_id)
    wait_until(lambda: status(lab, run_id) == "paused", timeout=5, message="paused once more")
    paused_at = lab.get(run_id)["step"]
    lab.stop(run_id)
    wait_until(lambda: status(lab, run_id) == "stopped", timeout=30, message="stop")
    assert lab.get(run_id)["step"] == paused_at and lab.get(run_id)["has_file"]
    assert np.array_equal(lab.history(run_id)["loss_steps"], np.arange(1, paused_at + 1))


def test_killed_worker_process_does_not_lose_the_run(cluster):
    lab, start_worker = cluster
    start_worker("w1")
    config = SMALL.replace(steps=8000)
    run_id = lab.submit(config)
    job = lab.get(run_id)["job"]
    wait_until(lambda: (lab.store.get(f"ckpt_step/{job}") or 0) >= 500, timeout=90, message="a checkpoint")
    os.kill(lab.get(run_id)["trained_by"]["pid"], signal.SIGKILL)  # the process training it, mid-run
    wait_until(lambda: status(lab, run_id) == "done", timeout=180, message="the run to finish after the kill")
    assert "resumed" in (lab.get(run_id)["note"] or "")
    assert np.array_equal(lab.history(run_id)["loss_steps"], np.arange(1, config.steps + 1))


def test_shutting_a_worker_down_checkpoints_its_run_for_another(cluster):
    """Ctrl-C or SIGTERM on a worker: its run checkpoints and waits for the next worker (a warm shutdown used to
    wait for the whole job to end, hours at paper scale)."""
    lab, start_worker = cluster
    first = start_worker("w1")
    run_id = lab.submit(SMALL.replace(steps=200_000, snapshot_every=500))
    wait_until(lambda: lab.get(run_id)["step"] > 0, timeout=60, message="training on the worker")
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=30)
    meta = lab.get(run_id)
    assert meta["status"] == "queued" and "paused by shutdown at step" in meta["note"]
    paused_at = meta["step"]
    start_worker("w2")
    wait_until(lambda: lab.get(run_id)["step"] > paused_at + 500, timeout=60, message="resumed on the next worker")
    lab.stop(run_id)
    wait_until(lambda: status(lab, run_id) == "stopped", timeout=10, message="stop")
    steps = lab.get(run_id)["step"]
    assert np.array_equal(lab.history(run_id)["loss_steps"], np.arange(1, steps + 1))


@pytest.mark.parametrize("url, says", [("foo", "--redis-url must be redis://"), ("UNUSED_PORT", "cannot use Redis at"),
                                       ("DB_99", "DB index is out of range")])
def test_the_app_refuses_a_redis_it_cannot_use_at_start(tmp_path, url, says):
    import subprocess
    import sys
    from pathlib import Path

    from tests.servers import free_port

    server = RedisServer(tmp_path) if url == "DB_99" else None
    try:
        url = {"UNUSED_PORT": f"redis://127.0.0.1:{free_port()}/0",
               "DB_99": server and server.url.rsplit("/", 1)[0] + "/99"}.get(url, url)
        result = subprocess.run([sys.executable, "run_app.py", "--backend", "celery", "--redis-url", url,
                                 "--port", str(free_port())], cwd=Path(__file__).resolve().parents[1],
                                capture_output=True, text=True, timeout=60)
    finally:
        if server:
            server.stop()
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr


def test_the_api_says_when_redis_is_gone(tmp_path):
    from app import create_app

    server = RedisServer(tmp_path)
    lab = lab_for(server.url)
    run_id = lab.submit(SMALL)
    client = create_app(lab).server.test_client()
    assert client.get(f"/api/runs/{run_id}").status_code == 200
    server.stop()
    gone = client.get(f"/api/runs/{run_id}")
    assert gone.status_code == 503 and "cannot be reached" in gone.get_json()["error"]
    assert server.url in gone.get_json()["error"]


def test_worker_settings_from_the_environment_are_checked_naming_the_variable(monkeypatch):
    from core.distributed import worker_settings

    monkeypatch.setenv("LAB_THREADS", "3")
    monkeypatch.setenv("LAB_CHECKPOINT_SECONDS", "")  # set but empty: the default
    assert worker_settings() == (3, 10.0)
    monkeypatch.setenv("LAB_THREADS", "two")
    with pytest.raises(ValueError, match="LAB_THREADS must be an integer from 1 to 1024, got 'two'"):
        worker_settings()
    monkeypatch.setenv("LAB_THREADS", "1")
    monkeypatch.setenv("LAB_CHECKPOINT_SECONDS", "-5")
    with pytest.raises(ValueError, match=r"LAB_CHECKPOINT_SECONDS must be a number of seconds in \(0, 3600\]"):
        worker_settings()


def test_a_worker_with_a_bad_setting_refuses_to_start_naming_it(tmp_path):
    """It used to start and take tasks, failing (or, before, silently leaving queued) every run it was sent."""
    server = RedisServer(tmp_path)
    worker = CeleryWorker(server.url, "bad", tmp_path / "bad.log", LAB_THREADS="two")
    try:
        assert worker.process.wait(timeout=60) != 0
        assert "LAB_THREADS must be an integer from 1 to 1024, got 'two'" in (tmp_path / "bad.log").read_text()
    finally:
        worker.stop()
        server.stop()


def test_a_value_over_the_redis_string_limit_is_kept_in_parts(tmp_path, monkeypatch):
    """Redis refuses a string over 512 MB: a large config's checkpoint (base64 in JSON) failed its job, and Retry
    failed alike. Parts here of 1 KB stand in for those of 128 MiB."""
    import core.redis_store
    from core.redis_store import PREFIX, RedisStore

    monkeypatch.setattr(core.redis_store, "PART_BYTES", 1024)
    server = RedisServer(tmp_path)
    store = RedisStore(server.url)
    try:
        def redis_keys() -> set[str]:
            return {k.decode() for k in store.client.scan_iter(match=PREFIX + "*")}

        big, bigger = os.urandom(5000), os.urandom(9000)
        store.set("ckpt/a", big)
        assert store.get("ckpt/a") == big and len(redis_keys()) == 1 + 7  # 5000 bytes as base64 JSON: 7 parts
        with store.transaction():
            store.set("ckpt/a", bigger)
            store.set("ckpt_step/a", 64)
            assert store.get("ckpt/a") == bigger  # a transaction reads its own writes
        assert store.get("ckpt/a") == bigger and store.get("ckpt_step/a") == 64
        assert len(redis_keys()) == 2 + 12  # the first value's parts are gone with it
        store.set("ckpt/a", b"small")
        assert store.get("ckpt/a") == b"small" and len(redis_keys()) == 2
        store.set("ckpt/a", big)
        store.delete("ckpt/a")
        assert store.get("ckpt/a") is None and redis_keys() == {PREFIX + "ckpt_step/a"}
    finally:
        store.close()
        server.stop()


def test_heartbeats_are_stamped_and_judged_by_redis_s_clock_not_each_machine_s(tmp_path, monkeypatch):
    """A worker machine whose clock is 60 s behind the app's: its live jobs were judged lost and handed on."""
    import time

    from core.jobs import WorkerId

    server = RedisServer(tmp_path)
    try:
        lab = lab_for(server.url)
        run_id = lab.submit(SMALL)
        job_id, _ = lab.claim(WorkerId("machine-b", 22))
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() - 60)  # on the worker's machine
        lab.heartbeat(job_id, WorkerId("machine-b", 22))
        monkeypatch.setattr(time, "time", real_time)  # on the app's
        assert abs(lab.store.get(f"job/{job_id}")["heartbeat"] - real_time()) < 5
        assert lab.recover() == [] and status(lab, run_id) == "running"
    finally:
        server.stop()
