"""Background jobs across real worker processes (spawned), on the embedded diskcache store."""

import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import RunConfig
from core.jobs import POINT_FIELDS, Lab, QueueFull, UnknownRun, WorkerId, controls_of, process_exists
from core.metrics import dead_neurons, final_loss, mono_ratio
from core.pool import WorkerPool
from core.store import DiskStore
from core.worker import SpeedMeter
from tests.helpers import wait_until

SMALL = RunConfig(n_features=16, embed_dim=4, n_neurons=24, eps=1 / 8, batch_size=32, steps=400,
                  snapshot_every=50, device="cpu")
LONG = SMALL.replace(steps=200_000, snapshot_every=500)


def status(lab: Lab, run_id: str) -> str:
    return lab.get(run_id)["status"]


def assert_continuous_history(lab: Lab, run_id: str, steps: int) -> None:
    history = lab.history(run_id)
    assert np.array_equal(history["loss_steps"], np.arange(1, steps + 1)), "loss history has a gap or duplicate"
    assert np.isfinite(history["losses"]).all()
    assert np.all(np.diff(history["points"]["step"]) > 0)


def test_submit_train_and_read_back(pool):
    lab = pool.lab
    run_id = lab.submit(SMALL, label="first")
    assert status(lab, run_id) in ("queued", "running")
    wait_until(lambda: status(lab, run_id) == "done", message="the run to finish")
    meta = lab.get(run_id)
    assert meta["step"] == SMALL.steps and meta["error"] is None and meta["label"] == "first"
    assert re.fullmatch(r"CPU, 1 thread|CPU, \d+ threads", meta["device"])  # where it trained
    assert [m["id"] for m in lab.list()] == [run_id]
    assert_continuous_history(lab, run_id, SMALL.steps)
    snapshot = lab.latest_snapshot(run_id)
    assert snapshot["step"] == SMALL.steps and snapshot["sfa"].shape == (24, 16)
    # the SFA the views count mono and dead neurons from gives the run's own metrics, exactly
    last_point = lab.history(run_id)["points"]
    assert set(last_point) == set(POINT_FIELDS)  # what the API answers with for no new point
    assert mono_ratio(snapshot["sfa"]) == meta["mono_ratio"]
    assert dead_neurons(snapshot["sfa"]).sum() == last_point["dead"][-1]
    assert {1, 2, 4, 128, 256, SMALL.steps} <= set(lab.frame_steps(run_id))
    record = torch.load(io.BytesIO(lab.run_file(run_id)), weights_only=True)
    assert record["final_model"]["0.weight"].shape == (24, 4)
    # each replay frame keeps its own step's biases: the bias bars of a replayed step are that step's
    final_bias = record["final_model"]["0.bias"].numpy()
    np.testing.assert_array_equal(lab.frame(run_id, SMALL.steps)["bias"], final_bias)
    np.testing.assert_array_equal(lab.frame(run_id, 1)["bias"], record["log2_spaced_models"][0]["0.bias"].numpy())
    assert not np.array_equal(lab.frame(run_id, 1)["bias"], final_bias)
    assert abs(record["metrics"]["mono_ratio"] - meta["mono_ratio"]) < 1e-3
    # one loss everywhere: the run list, the API and the Train page show the compare table's and run file's
    assert meta["loss"] == pytest.approx(record["metrics"]["final_loss"], rel=1e-6)
    assert meta["loss"] == pytest.approx(final_loss(lab.history(run_id)["losses"]), rel=1e-6)
    keys_before = len(list(lab.store.cache.iterkeys()))
    lab.delete(run_id)  # deleting frees everything stored for the run
    assert len(list(lab.store.cache.iterkeys())) < keys_before
    assert not [k for k in lab.store.cache.iterkeys() if run_id in str(k)]


def test_pause_resume_and_stop_within_a_second(pool):
    lab = pool.lab
    run_id = lab.submit(LONG)
    wait_until(lambda: lab.get(run_id)["step"] > 0, message="training to start")
    lab.pause(run_id)
    wait_until(lambda: status(lab, run_id) == "paused", timeout=1.5, message="pause")
    paused_at = lab.get(run_id)["step"]
    lab.resume(run_id)
    wait_until(lambda: lab.get(run_id)["step"] > paused_at + 500, message="training to continue")
    lab.stop(run_id)
    wait_until(lambda: status(lab, run_id) == "stopped", timeout=1.5, message="stop")
    step = lab.get(run_id)["step"]
    assert_continuous_history(lab, run_id, step)
    assert lab.run_file(run_id) is not None  # a stopped run keeps what it learnt


def test_stop_on_a_paused_run_does_not_wait_for_the_busy_worker(pool):
    """The pool's only worker trains another run: a saver process writes the stopped run's files from its
    checkpoint meanwhile, and exits."""
    lab = pool.lab
    paused = lab.submit(LONG)
    wait_until(lambda: lab.get(paused)["step"] > 0, message="training to start")
    lab.pause(paused)
    wait_until(lambda: status(lab, paused) == "paused", message="pause")
    paused_at = lab.get(paused)["step"]
    busy = lab.submit(LONG.replace(lr=0.02))
    wait_until(lambda: lab.get(busy)["step"] > 0, message="the other run to train")
    lab.stop(paused)
    wait_until(lambda: status(lab, paused) == "stopped", timeout=30, message="the stop, with the worker busy")
    meta = lab.get(paused)
    assert meta["step"] == paused_at and meta["has_file"] and meta["note"] is None
    record = torch.load(io.BytesIO(lab.run_file(paused)), weights_only=True)
    assert record["metrics"]["steps_trained"] == paused_at
    assert status(lab, busy) == "running"  # not interrupted to make room
    wait_until(lambda: not pool.alive_pids() - {p.pid for p in pool.processes}, message="the saver to exit")
    assert lab.store.get(f"ckpt/{meta['job']}") is None


def test_a_run_that_failed_with_its_job_is_retried_from_its_checkpoint(pool):
    """A job that fails (here its checkpoint could not be read) keeps its last good checkpoint: Retry (resume)
    trains its runs on from it, once what failed is fixed."""
    lab = pool.lab
    config = SMALL.replace(steps=20_000, snapshot_every=100)
    run_id = lab.submit(config)
    job_id = lab.get(run_id)["job"]
    wait_until(lambda: lab.get(run_id)["step"] >= 1000, message="training")
    lab.pause(run_id)
    wait_until(lambda: status(lab, run_id) == "paused", message="paused")
    paused_at, good = lab.get(run_id)["step"], lab.store.get(f"ckpt/{job_id}")
    lab.store.set(f"ckpt/{job_id}", b"not a checkpoint")
    lab.resume(run_id)
    wait_until(lambda: status(lab, run_id) == "failed", message="the job to fail")
    meta = lab.get(run_id)
    assert meta["error"].startswith("UnpicklingError") and controls_of(meta) == ["resume"]
    assert lab.store.get(f"ckpt/{job_id}") == b"not a checkpoint"  # kept for the retry
    lab.store.set(f"ckpt/{job_id}", good)  # what failed is fixed
    lab.resume(run_id)
    wait_until(lambda: status(lab, run_id) == "done", timeout=90, message="the retried run to finish")
    meta = lab.get(run_id)
    assert meta["error"] is None and meta["note"] == f"resumed from step {paused_at}"
    assert_continuous_history(lab, run_id, config.steps)


def test_a_diverged_run_is_not_retried_with_its_job(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    diverged, other = lab.submit_group([LONG, LONG.replace(seed=1)])
    job_id, _ = lab.claim(WorkerId("machine-a", 11))
    lab.store.set(f"meta/{diverged}", {**lab.get(diverged), "status": "failed", "error": "diverged at step 9"})
    assert controls_of(lab.get(diverged)) == []  # its numbers would diverge again
    lab.release(job_id, "failed", worker=WorkerId("machine-a", 11), error="RuntimeError: CUDA out of memory")
    assert controls_of(lab.get(other)) == ["resume"] and lab.get(diverged)["error"] == "diverged at step 9"
    lab.resume(diverged)  # does nothing
    assert status(lab, other) == "failed"
    lab.resume(other)
    assert status(lab, other) == "queued" and status(lab, diverged) == "failed"


def test_killed_worker_resumes_from_checkpoint_without_gaps(pool):
    lab = pool.lab
    config = SMALL.replace(steps=6000, snapshot_every=100)
    run_id = lab.submit(config)
    wait_until(lambda: lab.store.get(f"ckpt_step/{lab.get(run_id)['job']}", 0) >= 500, message="a checkpoint")
    victim = lab.store.get(f"job/{lab.get(run_id)['job']}")["worker"]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: status(lab, run_id) == "done", timeout=90, message="the resumed run to finish")
    assert "resumed from step" in (lab.get(run_id)["note"] or "")
    assert_continuous_history(lab, run_id, config.steps)


def test_app_stops_promptly_after_an_idle_worker_was_killed(pool):
    """A worker killed while waiting for work (by a signal to the process group, or the OOM killer) must not hang
    the app's shutdown."""
    lab = pool.lab
    run_id = lab.submit(SMALL.replace(steps=50))
    wait_until(lambda: status(lab, run_id) == "done", message="the run")  # the worker now waits for work
    victim = pool.processes[0]
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(lambda: not victim.is_alive(), timeout=10, message="the worker to die")
    stopping = threading.Thread(target=pool.stop, daemon=True)
    stopping.start()
    stopping.join(timeout=30)
    assert not stopping.is_alive(), "stopping the pool hung"
    assert not pool.processes


def test_app_restart_resumes_runs(tmp_path):
    data = tmp_path / "data"
    first = WorkerPool(data, workers=1, threads=1, checkpoint_seconds=0.3).start()
    run_id = first.lab.submit(SMALL.replace(steps=6000, snapshot_every=100))
    wait_until(lambda: first.lab.get(run_id)["step"] >= 1000, message="progress")
    for process in first.processes:  # the whole app dies: kill -9, no clean-up
        os.kill(process.pid, signal.SIGKILL)
    first._closing.set()
    second = WorkerPool(data, workers=1, threads=1).start()
    try:
        assert [m["id"] for m in second.lab.list()] == [run_id]
        wait_until(lambda: status(second.lab, run_id) == "done", timeout=90, message="the run after restart")
        assert_continuous_history(second.lab, run_id, 6000)
    finally:
        second.stop()


def test_failing_run_is_isolated(pool):
    lab = pool.lab
    bad = lab.submit(SMALL.replace(nonlinearity="solu", lr=1.0))
    good = lab.submit(SMALL)
    wait_until(lambda: status(lab, good) == "done", message="the healthy run")
    meta = lab.get(bad)
    assert meta["status"] == "failed" and "diverged" in meta["error"]


def test_bounded_queue_and_delete(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"), max_queued=2)
    first, second = lab.submit(SMALL), lab.submit(SMALL)
    with pytest.raises(QueueFull, match="limit 2"):
        lab.submit(SMALL)
    lab.stop(first)
    assert status(lab, first) == "stopped"
    lab.submit(SMALL)  # room again
    lab.delete(second)
    assert second not in [m["id"] for m in lab.list()]
    with pytest.raises(UnknownRun):
        lab.get(second)
    with pytest.raises(UnknownRun):
        lab.get("../etc/passwd")


def test_checkpoint_from_an_earlier_engine_restarts_the_job_instead_of_failing_it(tmp_path):
    """A batched job checkpointed when each run had its own LAMB tensors (before StackedLamb)."""
    import threading

    from core.stacked_lamb import paper_lamb
    from core.train import Trainer
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    configs = [SMALL.replace(lr=0.003), SMALL.replace(lr=0.01)]
    run_ids = lab.submit_group(configs)
    job_id, _ = lab.claim(WorkerId.here())
    old = Trainer(configs)
    old.advance(100)
    state = old.state_dict()
    state["optimizer"] = paper_lamb([t.clone() for w in old.weights for t in w.tensors()], lr=0.01).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    lab.store.set(f"ckpt/{job_id}", buffer.getvalue())
    for run_id in run_ids:  # the history the old engine had published up to its checkpoint
        lab.store.set(f"chunk/{run_id}/0", {"start": 0, "end": 100, "losses": np.full(100, 0.5, np.float32),
                                           "point": {"step": 100, "loss": 0.5}})
        lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "chunks": 1, "step": 100})

    JobRunner(lab, job_id, run_ids, threading.Event()).run()

    for run_id in run_ids:
        meta = lab.get(run_id)
        assert meta["status"] == "done" and meta["step"] == SMALL.steps
        assert "restarted from step 0" in meta["note"]
        assert meta["history_epoch"] == 1  # browsers showing the old curves re-read them whole
        assert_continuous_history(lab, run_id, SMALL.steps)


def test_eta_follows_the_current_speed():
    meter = SpeedMeter(0, 0.0)
    assert meter.update(0, 0.0) is None
    for second in range(1, 11):  # 100 steps/s while every neuron is dead and skipped
        meter.update(100 * second, float(second))
    assert meter.rate == pytest.approx(100)
    for second in range(11, 31):  # then 10 steps/s once they fire
        meter.update(1000 + 10 * (second - 10), float(second))
    assert meter.rate == pytest.approx(10, rel=0.02)  # an average since the start would still say 40
    meter.update(1200 + 1, 30.01)  # a snapshot soon after the last one weighs by its length (0.3 each: 37)
    assert meter.rate == pytest.approx(10, rel=0.05)


def test_eta_of_a_resumed_run_comes_from_the_steps_it_trains_now():
    meter = SpeedMeter(1000, 10.0)  # restored from a checkpoint taken after a fast dead phase
    assert meter.rate is None
    meter.update(1010, 11.0)
    assert meter.rate == pytest.approx(10)


def _rewrite_snapshot(directory: str, stop) -> None:  # noqa: ANN001 (a multiprocessing Event)
    store = DiskStore(directory)
    step = 0
    while not stop.is_set():
        store.set("sfa/x", {"step": step, "sfa": np.random.rand(64, 256).astype(np.float16)})
        step += 1


def test_a_snapshot_being_rewritten_never_reads_as_missing(tmp_path):
    """A worker replaces a run's snapshot (a file in the store) while the app reads it: diskcache can answer
    "missing" between its lookup and its read, and a live heatmap flickered to "waiting for the first
    snapshot". Here a second process rewrites one key as fast as it can while this one reads it."""
    import multiprocessing

    store = DiskStore(tmp_path / "store")
    store.set("sfa/x", {"step": -1, "sfa": np.zeros((64, 256), np.float16)})
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    writer = context.Process(target=_rewrite_snapshot, args=(str(tmp_path / "store"), stop))
    writer.start()
    try:
        wait_until(lambda: store.get("sfa/x")["step"] > 100, timeout=30, message="the writer to run")
        steps = [store.get("sfa/x", {"step": None})["step"] for _ in range(20000)]
    finally:
        stop.set()
        writer.join(10)
    assert None not in steps
    assert store.get("nothing here", "absent") == "absent"


def hand_on_after_silence(lab: Lab, job_id: str) -> list[str]:
    """What the supervisor does once a job's worker has sent no heartbeat for longer than the timeout."""
    from core.jobs import HEARTBEAT_TIMEOUT
    from core.store import now

    job = lab.store.get(f"job/{job_id}")
    lab.store.set(f"job/{job_id}", {**job, "heartbeat": now() - 2 * HEARTBEAT_TIMEOUT})
    return lab.recover()


def test_a_worker_that_went_silent_lets_go_once_its_job_is_handed_on(tmp_path):
    """A stalled machine that wakes up must not train on beside the worker now holding its job: both published
    into one history (steps duplicated, snapshots out of order)."""
    from core.jobs import JobLost, WorkerId
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(SMALL)
    stalled, successor = WorkerId("machine-a", 11), WorkerId("machine-b", 22)
    job_id, _ = lab.claim(stalled)
    stale = JobRunner(lab, job_id, [run_id], threading.Event(), worker=stalled)
    stale.trainer.advance(50)
    stale._publish()
    assert hand_on_after_silence(lab, job_id) == [run_id]
    assert lab.claim(successor)[0] == job_id

    stale.run()  # wakes up: it finds the job handed on and writes nothing more
    meta = lab.get(run_id)
    assert meta["status"] == "running" and meta["trained_by"] == successor.as_dict() and meta["step"] == 50
    for write in (stale._publish, stale._checkpoint, stale._save_run_files):
        with pytest.raises(JobLost):
            write()
    assert lab.run_file(run_id) is None
    stale._release("done")
    assert status(lab, run_id) == "running"

    JobRunner(lab, job_id, [run_id], threading.Event(), worker=successor).run()
    assert status(lab, run_id) == "done"
    assert_continuous_history(lab, run_id, SMALL.steps)


@pytest.mark.parametrize("control, ends", [("stop", "stopped"), ("pause", "paused")])
def test_a_stop_or_pause_asked_of_a_lost_worker_is_kept(tmp_path, control, ends):
    """Asked while the worker had gone silent, it used to be dropped when the job was requeued: the run trained on."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(LONG)
    job_id, _ = lab.claim(WorkerId("machine-a", 11))
    getattr(lab, control)(run_id)
    hand_on_after_silence(lab, job_id)
    if control == "pause":
        assert status(lab, run_id) == "paused" and "paused at step 0" in lab.get(run_id)["note"]
        return
    assert status(lab, run_id) == "queued"  # the stop goes to the next worker, which would have the checkpoint
    successor = WorkerId("machine-b", 22)
    assert lab.claim(successor)[0] == job_id
    JobRunner(lab, job_id, [run_id], threading.Event(), worker=successor).run()
    meta = lab.get(run_id)
    # none was written: stopped as it stands, not trained a step from scratch to have a file
    assert meta["status"] == ends and meta["step"] == 0 and lab.run_file(run_id) is None
    assert meta["note"] == "no run file: stopped before its first checkpoint"
    # a stopped run cannot be resumed: its checkpoint (megabytes at paper scale) is not kept
    assert lab.store.get(f"ckpt/{job_id}") is None and lab.store.get(f"ckpt_step/{job_id}") is None


def test_notes_say_where_a_run_goes_on_from_and_end_with_what_they_explain(tmp_path):
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(LONG)
    job_id, _ = lab.claim(WorkerId("machine-a", 11))
    runner = JobRunner(lab, job_id, [run_id], threading.Event(), worker=WorkerId("machine-a", 11))
    runner.trainer.advance(30)
    runner._checkpoint()
    lab.pause(run_id)
    hand_on_after_silence(lab, job_id)  # the pause is kept: paused at its checkpoint
    assert lab.get(run_id)["note"] == "paused at step 30, its last checkpoint"
    lab.resume(run_id)
    assert status(lab, run_id) == "queued" and lab.get(run_id)["note"] is None
    lab.claim(WorkerId("machine-b", 22))
    assert lab.get(run_id)["note"] == "resumed from step 30"
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "status": "failed"})  # e.g. diverged, in a batched job
    lab.release(job_id, "queued")
    lab.claim(WorkerId("machine-c", 33))
    assert status(lab, run_id) == "failed"  # a finished run of a requeued job is not marked running again


def test_stopping_a_paused_run_saves_it_from_its_checkpoint_and_then_frees_it(tmp_path):
    """Stop on a paused run: its checkpoint is the only copy of what it learnt. The job goes to the front of the
    queue marked stop; the worker that takes it saves the run file from the checkpoint, trains no step, and frees
    the checkpoint."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(LONG)
    job_id, job = lab.claim(WorkerId("machine-a", 11))
    runner = JobRunner(lab, job_id, job["runs"], threading.Event(), worker=WorkerId("machine-a", 11))
    runner.trainer.advance(30)
    runner._interrupt("pause", lab.heartbeat(job_id, WorkerId("machine-a", 11)))
    assert status(lab, run_id) == "paused" and lab.store.get(f"ckpt/{job_id}") is not None  # kept for resume
    # its run file as it stands: the inspector and the download have its weights while it waits
    assert lab.get(run_id)["has_file"]
    assert torch.load(io.BytesIO(lab.run_file(run_id)), weights_only=True)["metrics"]["steps_trained"] == 30
    other = lab.submit(SMALL)
    lab.stop(run_id)
    meta = lab.get(run_id)
    assert meta["status"] == "queued" and meta["note"] == ("stopping: a worker saves it from step 30, its last "
                                                           "checkpoint, once one is free")
    assert lab.store.get("queue")[0] == job_id  # before the run queued earlier
    assert controls_of(meta) == ["pause"]  # not Stop again: it would do nothing
    claimed, job = lab.claim(WorkerId("machine-b", 22))
    assert claimed == job_id
    JobRunner(lab, job_id, job["runs"], threading.Event(), worker=WorkerId("machine-b", 22)).run()
    meta = lab.get(run_id)
    assert meta["status"] == "stopped" and meta["step"] == 30 and meta["has_file"] and meta["note"] is None
    assert torch.load(io.BytesIO(lab.run_file(run_id)), weights_only=True)["metrics"]["steps_trained"] == 30
    assert lab.store.get(f"ckpt/{job_id}") is None and lab.store.get(f"ckpt_step/{job_id}") is None
    assert status(lab, other) == "queued"


def test_a_stop_whose_run_file_cannot_be_saved_leaves_the_run_paused_to_stop_again(tmp_path, monkeypatch):
    """Marked failed, it offered only Retry, which trains on: the opposite of the Stop asked for."""
    from core import worker

    lab = Lab(DiskStore(tmp_path / "data"))
    job_id, (run_id,) = paused_after(lab, 30, [LONG])
    lab.stop(run_id)

    def cannot_save(*_args):  # noqa: ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(worker, "build_run_file", cannot_save)
    saver = WorkerId("machine-b", 22)
    worker._work_on(lab, *lab.claim_stopping(saver), threading.Event(), 10.0, saver, saving_only=True)
    meta = lab.get(run_id)
    assert meta["status"] == "paused" and "its run file could not be saved (OSError" in meta["note"]
    assert "stop" in controls_of(meta) and lab.store.get(f"ckpt/{job_id}") is not None  # the weights kept


def paused_after(lab: Lab, steps: int, configs: list[RunConfig]) -> tuple[str, list[str]]:
    """A job of `configs` trained `steps` steps in this process, then paused (its checkpoint written)."""
    from core.worker import JobRunner

    run_ids = lab.submit_group(configs)
    job_id, job = lab.claim(WorkerId("machine-a", 11))
    runner = JobRunner(lab, job_id, job["runs"], threading.Event(), worker=WorkerId("machine-a", 11))
    runner.trainer.advance(steps)
    runner._interrupt("pause", lab.heartbeat(job_id, WorkerId("machine-a", 11)))
    return job_id, run_ids


def test_a_run_waiting_to_be_stopped_takes_no_queue_room_and_can_be_paused_instead(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"), max_queued=2)
    job_id, (first, second) = paused_after(lab, 30, [LONG, LONG.replace(lr=0.02)])
    lab.stop(first)
    assert status(lab, second) == "queued" and lab.queued_run_count() == 0  # only waits for its files
    lab.submit_group([SMALL, SMALL.replace(lr=0.02)])  # the queue's room is all there
    lab.pause(second)  # changed its mind: paused again, with its checkpoint, and resumable
    meta = lab.get(second)
    assert meta["status"] == "paused" and meta["note"] is None and lab.store.get(f"job/{job_id}")["control"] is None
    assert "resume" in controls_of(meta) and lab.store.get(f"ckpt/{job_id}") is not None


def test_stop_leaves_a_run_that_failed_in_the_job_as_it_was(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    job_id, (diverged, paused) = paused_after(lab, 30, [LONG, LONG.replace(lr=0.02)])
    meta = lab.get(diverged)
    lab.store.set(f"meta/{diverged}", {**meta, "status": "failed", "error": "loss became nan at step 12"})
    lab.stop(paused)
    assert status(lab, diverged) == "failed" and status(lab, paused) == "queued"


def test_a_run_rewound_to_its_checkpoint_shows_that_step_s_snapshot_and_figures(tmp_path):
    """A worker lost after its last checkpoint had published later steps: the run goes back to the checkpoint,
    and so do its heatmap and stats (a run then stopped while it waits kept the lost steps' numbers)."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    job_id, (run_id,) = paused_after(lab, 30, [LONG])
    at_checkpoint = lab.get(run_id)
    lab.store.set(f"meta/{run_id}", {**at_checkpoint, "step": 50, "mono_ratio": 0.9, "loss": 9.0})  # the lost steps
    lab.store.set(f"sfa/{run_id}", {"step": 50, "sfa": np.ones((24, 16), np.float32), "bias": np.ones(24, np.float32)})
    lab.resume(run_id)
    claimed, job = lab.claim(WorkerId("machine-b", 22))
    runner = JobRunner(lab, claimed, job["runs"], threading.Event(), worker=WorkerId("machine-b", 22))
    meta, snapshot = lab.get(run_id), lab.latest_snapshot(run_id)
    assert meta["step"] == snapshot["step"] == 30
    assert np.array_equal(snapshot["sfa"], runner.trainer.sfa()[0])
    assert (meta["mono_ratio"], meta["loss"]) == (at_checkpoint["mono_ratio"], at_checkpoint["loss"])


def test_a_run_stopped_while_its_checkpoint_cannot_be_read_keeps_its_history(tmp_path):
    """A checkpoint this worker cannot load (written on a GPU, say): stopped as it stands, not trained again from 0
    (which wiped its history and saved a one-step run)."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    job_id, (run_id,) = paused_after(lab, 30, [LONG])
    state = torch.load(io.BytesIO(lab.store.get(f"ckpt/{job_id}")), weights_only=True)
    buffer = io.BytesIO()
    torch.save({**state, "device_type": "cuda"}, buffer)
    lab.store.set(f"ckpt/{job_id}", buffer.getvalue())
    history = lab.history(run_id)["loss_steps"]
    lab.stop(run_id)
    claimed, job = lab.claim(WorkerId("machine-b", 22))
    JobRunner(lab, claimed, job["runs"], threading.Event(), worker=WorkerId("machine-b", 22)).run()
    meta = lab.get(run_id)
    # its run file is the one the pause saved, at the same step
    assert meta["status"] == "stopped" and meta["step"] == 30 and meta["has_file"]
    assert torch.load(io.BytesIO(lab.run_file(run_id)), weights_only=True)["metrics"]["steps_trained"] == 30
    assert meta["note"].startswith("its run file is the one saved when it was paused: its checkpoint could not be "
                                   "read (it was written on the cuda")
    assert np.array_equal(lab.history(run_id)["loss_steps"], history)


def test_deleting_one_run_of_a_batched_job_leaves_the_others_their_own_numbers(tmp_path):
    """A run deleted from a job of three, then pause and resume: the third run was published with the second's
    numbers (the runner re-indexed its runs), and on resume the checkpoint no longer fitted and the job failed."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    configs = [SMALL.replace(lr=lr) for lr in (0.003, 0.01, 0.03)]
    first, middle, last = lab.submit_group(configs)
    worker = WorkerId("machine-a", 11)
    job_id, _ = lab.claim(worker)
    runner = JobRunner(lab, job_id, [first, middle, last], threading.Event(), worker=worker)
    runner.trainer.advance(40)
    lab.delete(middle)
    runner._interrupt("pause", lab.heartbeat(job_id, worker))
    assert status(lab, last) == "paused"
    published = lab.latest_snapshot(last)["sfa"]
    assert np.array_equal(published, runner.trainer.sfa()[2])  # its own run, not the deleted one's
    assert not np.allclose(published, runner.trainer.sfa()[1], atol=1e-3)

    lab.resume(first)
    job_id, job = lab.claim(WorkerId("machine-b", 22))
    resumed = JobRunner(lab, job_id, job["runs"], threading.Event(), worker=WorkerId("machine-b", 22))
    assert resumed.trainer.step == 40  # from the checkpoint, not from 0
    resumed.run()
    for run_id in (first, last):
        assert status(lab, run_id) == "done"
        assert_continuous_history(lab, run_id, SMALL.steps)
    assert not lab.exists(middle)


def test_a_worker_busy_on_a_long_step_keeps_its_job(tmp_path, monkeypatch):
    """A large config's step can outlast the heartbeat timeout on a CPU: its live worker used to be judged lost,
    its job requeued from step 0 before any checkpoint, and the run never finished."""
    import core.worker
    from core.jobs import HEARTBEAT_TIMEOUT
    from core.store import now
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(SMALL.replace(steps=4, snapshot_every=2))
    job_id, _ = lab.claim(WorkerId.here())
    beat = core.worker.Heartbeat(lab, job_id, WorkerId.here(), every=0.05).__enter__()  # as a worker does
    runner = JobRunner(lab, job_id, [run_id], threading.Event(), beat=beat)
    advance, judged_lost = runner.trainer.advance, []

    def slow_step(steps: int) -> None:
        job = lab.store.get(f"job/{job_id}")  # as if its last beat was a timeout ago when the step began
        lab.store.set(f"job/{job_id}", {**job, "heartbeat": now() - 2 * HEARTBEAT_TIMEOUT})
        wait_until(lambda: now() - lab.store.get(f"job/{job_id}")["heartbeat"] < 1.0, timeout=5,
                   message="a heartbeat while the step trains")
        judged_lost.extend(lab.recover())
        advance(steps)

    runner.trainer.advance = slow_step
    runner.run()
    beat.__exit__()
    assert judged_lost == [] and status(lab, run_id) == "done"


def test_a_stuck_worker_goes_silent_and_its_job_is_handed_on(tmp_path):
    """The heartbeat thread beats only while the training loop looks in: a hung step must not hold a job forever."""
    from core.worker import Heartbeat

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(SMALL)
    worker = WorkerId.here()
    job_id, _ = lab.claim(worker)
    with Heartbeat(lab, job_id, worker, every=0.05, stuck_after=0.2) as beat:
        wait_until(lambda: lab.store.get(f"job/{job_id}")["heartbeat"] is not None)
        beat.progressed()
        first = lab.store.get(f"job/{job_id}")["heartbeat"]
        wait_until(lambda: lab.store.get(f"job/{job_id}")["heartbeat"] > first, timeout=5, message="a beat")
        stopped_at = wait_until(lambda: (lambda b: b if time.monotonic() - beat._progress > 0.5 else None)(
            lab.store.get(f"job/{job_id}")["heartbeat"]), timeout=5, message="the loop to count as stuck")
        time.sleep(0.3)
        assert lab.store.get(f"job/{job_id}")["heartbeat"] == stopped_at  # no beat since it stopped looking in
    assert status(lab, run_id) == "running"


def test_a_runner_whose_job_was_handed_on_before_it_started_leaves_the_history_alone(tmp_path):
    """A runner slow to build (a large checkpoint to read) used to rewind the new owner's published steps to its
    checkpoint: a gap in the history for good."""
    from core.jobs import JobLost
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(SMALL)
    first, successor = WorkerId("machine-a", 11), WorkerId("machine-b", 22)
    job_id, _ = lab.claim(first)
    runner = JobRunner(lab, job_id, [run_id], threading.Event(), worker=first)
    runner.trainer.advance(50)
    runner._publish()
    runner._checkpoint()
    hand_on_after_silence(lab, job_id)
    assert lab.claim(successor)[0] == job_id
    successor_runner = JobRunner(lab, job_id, [run_id], threading.Event(), worker=successor)
    successor_runner.trainer.advance(100)
    successor_runner._publish()
    before = lab.get(run_id)
    assert before["step"] == 150

    with pytest.raises(JobLost):
        JobRunner(lab, job_id, [run_id], threading.Event(), worker=first)  # the first worker, late
    after = lab.get(run_id)
    assert (after["step"], after["chunks"], after["frames"]) == (150, before["chunks"], before["frames"])


def test_runs_deleted_between_the_claim_and_the_start_leave_the_rest_training(tmp_path):
    from core.jobs import JobLost
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    a, b, c = lab.submit_group([SMALL.replace(lr=lr) for lr in (0.003, 0.01, 0.03)])
    job_id, job = lab.claim(WorkerId.here())
    lab.delete(b)
    JobRunner(lab, job_id, job["runs"], threading.Event()).run()
    assert [status(lab, r) for r in (a, c)] == ["done", "done"]
    assert lab.config(c).lr == 0.03  # each run trained with its own config, not its neighbour's

    only = lab.submit(SMALL)
    job_id, job = lab.claim(WorkerId.here())
    lab.delete(only)
    with pytest.raises(JobLost, match="every run was deleted"):
        JobRunner(lab, job_id, job["runs"], threading.Event())
    assert lab.store.get(f"job/{job_id}") is None


def test_stopping_a_requeued_run_whose_steps_were_never_checkpointed_shows_none(tmp_path):
    """Its worker died before its first checkpoint: the steps it had shown were not saved, and Stop used to keep
    their loss, snapshot and curves on a run with no weights."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(LONG)
    job_id, _ = lab.claim(WorkerId("machine-a", 11))
    runner = JobRunner(lab, job_id, [run_id], threading.Event(), worker=WorkerId("machine-a", 11))
    runner.trainer.advance(1000)
    runner._publish()
    assert lab.get(run_id)["step"] == 1000 and lab.latest_snapshot(run_id) is not None
    assert lab.recover(is_alive=lambda worker: False) == [run_id]

    lab.stop(run_id)
    meta = lab.get(run_id)
    assert (meta["status"], meta["step"], meta["loss"], meta["chunks"], meta["frames"]) == ("stopped", 0, None, 0, [])
    assert "the 1,000 steps it showed were not saved" in meta["note"]
    assert lab.latest_snapshot(run_id) is None and len(lab.history(run_id)["losses"]) == 0


def test_a_sweep_is_queued_whole_even_when_another_client_submits_meanwhile(tmp_path):
    """Its jobs were queued one transaction each: a submit in between could fill the queue, and the user was told
    "queue full" with half the sweep queued (a retry then doubled it)."""
    paper = RunConfig(n_features=512, embed_dim=64, n_neurons=1024, batch_size=1024, steps=64, snapshot_every=8,
                      device="cpu")  # shapes not worth stacking: one job per run
    other_client = []

    def dispatch(_job_id: str) -> None:  # where the other client gets in, once the first job is queued
        if not other_client:
            other_client.append("asked")
            try:
                other_client.append(lab.submit(SMALL))
            except QueueFull:
                other_client.append("queue full")

    lab = Lab(DiskStore(tmp_path / "data"), max_queued=3, dispatch=dispatch)
    ids = lab.submit_batched([paper.replace(lr=lr) for lr in (0.003, 0.01, 0.03)])
    assert [status(lab, r) for r in ids] == ["queued"] * 3
    assert other_client == ["asked", "queue full"]


def test_a_job_emptied_by_deletes_while_its_worker_died_is_removed(tmp_path):
    """Its record and checkpoint stayed forever: no run led recover() to it."""
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(LONG)
    worker = WorkerId("machine-a", 11)
    job_id, _ = lab.claim(worker)
    runner = JobRunner(lab, job_id, [run_id], threading.Event(), worker=worker)
    runner.trainer.advance(10)
    runner._checkpoint()
    lab.delete(run_id)  # its worker, busy, would stop it at its next look
    assert lab.recover(is_alive=lambda w: True) == [] and lab.store.get(f"job/{job_id}") is not None
    lab.recover(is_alive=lambda w: False)  # it died first
    assert lab.store.get(f"job/{job_id}") is None and lab.store.get(f"ckpt/{job_id}") is None
    assert lab.store.get("emptied") == []


class Broker:
    """A Celery broker that may be away: the tasks it took, by job."""

    def __init__(self, up: bool):
        self.up, self.sent = up, []

    def send(self, job_id: str) -> None:
        if not self.up:
            raise ConnectionError("broker away")
        self.sent.append(job_id)


def test_a_job_whose_task_did_not_reach_the_broker_is_sent_again(tmp_path):
    """The runs were queued, the task never sent (a broker blip): nothing ever sent it again, and the runs waited
    forever. A job sent twice is trained once."""
    broker = Broker(up=False)
    lab = Lab(DiskStore(tmp_path / "data"), dispatch=broker.send)
    run_id = lab.submit(SMALL)  # the user's runs are queued all the same
    job_id = lab.get(run_id)["job"]
    assert status(lab, run_id) == "queued" and lab.resend() == [] and broker.sent == []
    broker.up = True
    assert lab.resend() == [job_id] and broker.sent == [job_id]
    assert lab.resend() == []  # sent once it reached the broker
    assert lab.resend(every_queued=True) == [job_id]  # at an app's start: every queued job, in case
    assert lab.claim_job(job_id, WorkerId("machine-a", 11)) is not None
    assert lab.claim_job(job_id, WorkerId("machine-b", 22)) is None  # the second task finds it taken


def test_a_continued_run_trains_in_its_parents_world_not_one_drawn_again(tmp_path):
    """The embedders were drawn again from the seed: a run trained on a GPU (whose generator draws other numbers)
    and continued on a CPU was fed inputs its weights never saw. A parent file's own embedders stand in for that."""
    from core.runfile import load_run_file
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    for task in ("decoder", "random_proj"):
        parent = lab.submit(SMALL.replace(task=task, steps=64, snapshot_every=32))
        job_id, job = lab.claim(WorkerId.here())
        JobRunner(lab, job_id, job["runs"], threading.Event()).run()
        record = load_run_file(io.BytesIO(lab.run_file(parent)))
        other_world = {name: -record["setup"][name] for name in ("fixed_embedder", "output_embedder")
                       if name in record["setup"]}
        record["setup"].update(other_world)
        buffer = io.BytesIO()
        torch.save(record, buffer)
        lab.store.set(f"file/{parent}", buffer.getvalue())

        child = lab.continue_run(parent, lab.config(parent))
        job_id, job = lab.claim(WorkerId.here())
        JobRunner(lab, job_id, job["runs"], threading.Event()).run()
        setup = load_run_file(io.BytesIO(lab.run_file(child)))["setup"]
        for name, embedder in other_world.items():
            assert torch.equal(setup[name], embedder), name


def test_a_chain_of_continued_runs_counts_on_from_every_ancestor(tmp_path):
    """Compare drew a continued run's continuation on top of its parent's curve (from the parent's start), not after
    it; the count is kept in the start, so it stands when the ancestors are deleted."""
    from core.continuation import steps_before
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    config = SMALL.replace(steps=64, snapshot_every=32)

    def trained(run_id: str) -> str:
        job_id, job = lab.claim(WorkerId.here())
        JobRunner(lab, job_id, job["runs"], threading.Event()).run()
        return run_id

    parent = trained(lab.submit(config))
    child = trained(lab.continue_run(parent, config))
    grandchild = lab.continue_run(child, config, step=32)
    lab.delete(parent)
    assert [steps_before(lab.get(r).get("start")) for r in (child, grandchild)] == [64, 96]


def test_a_pool_does_not_take_the_jobs_of_another_apps_live_workers(tmp_path):
    """Two apps on one data dir (or workers left running by an app killed hard) judged each other's workers dead
    every second, and kept taking their jobs."""
    import multiprocessing as mp

    pool = WorkerPool(tmp_path / "data")
    here = WorkerId.here().host
    assert pool._is_alive({"host": here, "pid": os.getpid()})  # not one of its own, but alive
    gone = mp.get_context("spawn").Process(target=os.getpid)
    gone.start()
    gone.join()
    assert not pool._is_alive({"host": here, "pid": gone.pid})
    assert pool._is_alive({"host": "another-machine", "pid": gone.pid})  # judged by its heartbeat


def test_a_job_its_worker_let_go_of_while_recover_looked_is_not_queued_again(tmp_path):
    """recover() read the job as silent, then its worker paused it: the job was queued again and the paused run
    trained on without a click."""
    from core.jobs import HEARTBEAT_TIMEOUT
    from core.store import now

    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(SMALL)
    worker = WorkerId("machine-a", 11)
    job_id, _ = lab.claim(worker)
    job = lab.store.get(f"job/{job_id}")
    lab.store.set(f"job/{job_id}", {**job, "heartbeat": now() - 2 * HEARTBEAT_TIMEOUT})

    def pauses_meanwhile(_worker: dict) -> bool:  # the worker lets go as recover() looks
        lab.release(job_id, "paused", worker=worker)
        return False

    assert lab.recover(is_alive=pauses_meanwhile) == []
    assert status(lab, run_id) == "paused" and job_id not in lab.store.get("queue", [])


def test_a_task_that_could_not_be_sent_again_at_start_is_kept_to_send(tmp_path):
    broker = Broker(up=True)
    lab = Lab(DiskStore(tmp_path / "data"), dispatch=broker.send)
    job_id = lab.get(lab.submit(SMALL))["job"]
    broker.up = False
    assert lab.resend(every_queued=True) == []  # the app's start, the broker away
    broker.up = True
    assert lab.resend() == [job_id]  # the next round sends it


def test_a_run_whose_job_record_was_lost_is_failed_saying_so_and_can_be_deleted(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    run_id, other = lab.submit(SMALL), lab.submit(SMALL)
    job_id = lab.get(run_id)["job"]
    lab.claim(WorkerId("machine-a", 11))
    lab.store.delete(f"job/{job_id}")
    lab.recover(is_alive=lambda worker: True)
    meta = lab.get(run_id)
    assert meta["status"] == "failed" and meta["error"] == "its job record was lost"
    lab.delete(run_id)
    assert [m["id"] for m in lab.list()] == [other]


def test_workers_of_an_app_killed_hard_checkpoint_their_job_and_exit(tmp_path):
    """kill -9 on the app sends its workers nothing: they used to train on forever, unsupervised, holding their
    runs, so that the next start could not resume them."""
    import subprocess
    import sys

    data = tmp_path / "data"
    worker_pid = None
    app = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from core.pool import WorkerPool\n"
        f"pool = WorkerPool({str(data)!r}, workers=1, threads=1, checkpoint_seconds=0.3).start()\n"
        "print(pool.processes[0].pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        worker_pid = int(app.stdout.readline())
        lab = Lab(DiskStore(data))
        run_id = lab.submit(LONG)
        wait_until(lambda: lab.get(run_id)["step"] >= 500, message="training")
        app.kill()
        app.wait()
        wait_until(lambda: status(lab, run_id) == "queued", timeout=20, message="the orphaned worker to let go")
        meta = lab.get(run_id)
        assert meta["note"].startswith("paused by shutdown") and lab.store.get(f"job/{meta['job']}")["worker"] is None
        time.sleep(1.0)
        assert lab.get(run_id)["step"] == meta["step"]  # nothing trains it now: the next start resumes it
    finally:
        app.kill()
        if worker_pid is not None and process_exists(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


def test_runs_the_stores_disk_cannot_hold_are_refused_up_front(tmp_path):
    """A run that fits the memory budget can still fill the disk (each replay frame is k x N): refused when asked,
    not failed mid-run with a full disk; what a finished run keeps is within the estimate."""
    import sqlite3
    import threading

    from core.jobs import InvalidConfig
    from core.store import DISK_SPARE_BYTES
    from core.worker import JobRunner

    lab = Lab(DiskStore(tmp_path / "data"))
    wide = SMALL.replace(n_features=4096, embed_dim=1024, n_neurons=16384, batch_size=1, steps=2, snapshot_every=1)
    assert wide.validate() == {}  # within the memory budget
    lab.store.free_bytes = lambda: DISK_SPARE_BYTES + 2**30  # 1 GiB beyond the spare
    with pytest.raises(InvalidConfig) as refused:
        lab.submit(wide)
    assert refused.value.errors["disk"].startswith(
        "this run would keep up to 4.97 GiB in the run store (replay frames 896.4 MiB, run file 992.2 MiB, checkpoints "
        "3.13 GiB, history 0.0 MiB), and its disk has 1.00 GiB free beyond the 64 MiB kept spare: fewer neurons or "
        "features")
    with pytest.raises(InvalidConfig, match="these 2 runs would keep"):
        lab.submit_batched([wide, wide.replace(seed=1)])
    assert lab.list() == []
    # runs already queued count for what they will write: two that fit one at a time do not fit together
    half = wide.replace(n_neurons=2048)
    assert sum(half.disk_estimate().values()) < 2**30 < 2 * sum(half.disk_estimate().values())
    first = lab.submit(half)
    with pytest.raises(InvalidConfig) as refused:
        lab.submit(half.replace(seed=1))
    assert "and runs queued or training may still write 664.2 MiB of it" in refused.value.errors["disk"]
    lab.delete(first)
    lab.store.free_bytes = lambda: DISK_SPARE_BYTES + 100 * 2**20  # a nearly full disk still takes a small run
    lab.delete(lab.submit(SMALL))
    small = SMALL.replace(steps=64, snapshot_every=4)
    run_id = lab.submit(small)  # fits
    def stored() -> int:
        # SQLite's write-ahead log is the store's, shared by all runs (up to ~4 MB): its pages moved into the database
        with sqlite3.connect(tmp_path / "data" / "cache.db") as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(f.stat().st_size for f in (tmp_path / "data").rglob("*")
                   if f.is_file() and not f.name.endswith(("-wal", "-shm")))

    before = stored()
    job_id, _ = lab.claim(WorkerId.here())
    JobRunner(lab, job_id, [run_id], threading.Event()).run()
    kept = stored() - before
    assert lab.get(run_id)["status"] == "done" and 0 < kept <= sum(small.disk_estimate().values())
