"""Embedded workers: processes that take queued jobs from the store and train them.

The pool (core.pool) starts them with the `spawn` method; importing this module runs no torch computation, and
each worker sets its own thread count.

A worker stops on SIGTERM: it checkpoints its job, queues it again and exits. The pool sends it, and so
does a service manager stopping the whole process group. No lock is shared with the app for this: a
multiprocessing Event's `set` waits forever for a waiter that was killed while waiting.
"""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import threading
import time
import traceback
from typing import Any

import numpy as np
import torch

from core.config import RunConfig, frame_interval
from core.continuation import start_from_bytes
from core.jobs import HEARTBEAT_TIMEOUT, JobLost, Lab, WorkerId, current, has_run_file
from core.metrics import single_feature_activations
from core.runfile import build_run_file
from core.store import DiskStore, now
from core.train import IncompatibleCheckpoint, Trainer, next_snapshot_step

log = logging.getLogger(__name__)

CONTROL_EVERY = 0.25  # seconds between checks of stop / pause / delete
SNAPSHOT_EVERY_SECONDS = 1.0
CHECKPOINT_EVERY_SECONDS = 10.0
HEARTBEAT_EVERY = HEARTBEAT_TIMEOUT / 4  # seconds between the heartbeat thread's beats
STORE_RETRY_SECONDS = 10.0  # a worker's pause after the store failed under it (a full disk): no busy loop
STUCK_AFTER = 600.0  # seconds without a look from the training loop before a worker counts as stuck, not slow
FLOAT16_MAX = 65504.0


def as_float16(sfa: np.ndarray) -> np.ndarray:
    return np.clip(sfa, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


def replay_frame(sfa: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """A replay frame: the SFA in float16 (frames are many) and the first-layer biases (k floats) of that step,
    so that a replayed step's bias bars are its own."""
    return {"sfa": as_float16(sfa), "bias": np.asarray(bias, dtype=np.float32)}


def diverged_note(steps: int) -> str:
    """What a diverged run's row and view add about the weights its run file keeps."""
    return f"weights up to step {steps:,} kept: Continue goes on from step 1 (another in the inspector)"


class SpeedMeter:
    """Steps per second of recent training, for the ETA.

    A run's speed changes as it trains (dead neurons are skipped while dead, so a negative-bias run
    starts several times faster than it goes on), and an average since the start would lag behind.
    Each interval weighs by its length: a recent rate over about the last `memory_seconds` of training.
    """

    def __init__(self, step: int, elapsed: float, memory_seconds: float = 3.0):
        self.memory_seconds = memory_seconds
        self.rate: float | None = None
        self._mark = (step, elapsed)  # a resumed run's rate comes from the steps it trains now

    def update(self, step: int, elapsed: float) -> float | None:
        """Take the trainer's step count and training seconds; return the current rate."""
        steps, seconds = step - self._mark[0], elapsed - self._mark[1]
        if steps > 0 and seconds > 0:
            recent = steps / seconds
            weight = 1.0 - math.exp(-seconds / self.memory_seconds)
            self.rate = recent if self.rate is None else self.rate + weight * (recent - self.rate)
            self._mark = (step, elapsed)
        return self.rate


class Heartbeat:
    """Beats for a claimed job from a thread of its own, from the claim to the end: a large config's step (a minute
    on a CPU), a checkpoint or a slow start (a large checkpoint to read) must not pass for a lost worker. Only while
    the training loop keeps looking in (`progressed`): a worker stuck for `stuck_after` goes silent, and its job
    is handed on."""

    def __init__(self, lab: Lab | None, job_id: str, worker: WorkerId, every: float = HEARTBEAT_EVERY,
                 stuck_after: float = STUCK_AFTER):
        self.lab, self.job_id, self.worker = lab, job_id, worker
        self.every, self.stuck_after = every, stuck_after
        self._progress = time.monotonic()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-heartbeat", daemon=True)

    @staticmethod
    def none() -> Heartbeat:
        """No thread: the training loop's own beats between steps only."""
        return Heartbeat(None, "", WorkerId("", 0))

    def progressed(self) -> None:
        self._progress = time.monotonic()

    def __enter__(self) -> Heartbeat:
        if self.lab is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._finished.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._finished.wait(self.every):
            if time.monotonic() - self._progress > self.stuck_after:
                continue  # stuck, not slow: silence hands the job on
            try:
                self.lab.heartbeat(self.job_id, self.worker)
            except JobLost:
                return  # the training loop finds it out at its next look
            except Exception:  # the store away for a moment: the next beat tries again
                log.exception("heartbeat of job %s failed", self.job_id)


class JobRunner:
    """Trains one claimed job, publishing snapshots and honouring control flags between steps."""

    def __init__(self, lab: Lab, job_id: str, run_ids: list[str], shutdown: Any,
                 checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS, worker: WorkerId | None = None,
                 beat: Heartbeat | None = None):
        self.beat = beat or Heartbeat.none()  # the worker's beat from the claim on, told of each look
        self.checkpoint_seconds = checkpoint_seconds
        self.worker = worker or WorkerId.here()  # who claimed the job: every write checks it still holds it
        self.lab, self.store = lab, lab.store
        self.job_id = job_id
        self.shutdown = shutdown  # has is_set(): True once the worker is asked to exit
        blob = self.store.get(f"ckpt/{job_id}")
        state = None if blob is None else torch.load(io.BytesIO(blob), weights_only=True)
        saved_ids = state.get("run_ids") if state else None
        if saved_ids and set(run_ids) <= set(saved_ids):
            # Runs deleted since the checkpoint train on unpublished: its tensors hold every run of the job, and the
            # trainer's index of a run must stay its index there (run i's numbers are published as run_ids[i]).
            self.run_ids = list(saved_ids)
            self.configs = [RunConfig(**config) for config in state["configs"]]
        else:
            metas = [self.store.get(f"meta/{r}") for r in run_ids]
            # runs deleted since the claim are left out: the rest still train (no run would have weights to keep)
            self.run_ids = [r for r, meta in zip(run_ids, metas) if meta is not None]
            self.configs = [RunConfig(**current(meta)["config"]) for meta in metas if meta is not None]
            if not self.run_ids:
                self.lab.release(job_id, "stopped", worker=self.worker)
                raise JobLost(f"job {job_id}: every run was deleted before it started")
        blobs = [self.store.get(f"start/{run_id}") for run_id in self.run_ids]  # continued runs' starts
        starts = [None if b is None else start_from_bytes(b) for b in blobs]
        self.trainer = Trainer(self.configs, starts=[s and s[0] for s in starts], worlds=[s and s[1] for s in starts])
        self.log2_seen = [0] * len(self.run_ids)
        self.frame_every = frame_interval(self.configs[0])
        self.last_checkpoint = time.monotonic()
        job = self.store.get(f"job/{job_id}")
        self.stop_pending = job is not None and job.get("control") == "stop"
        # stopped while it waited, with no weights to save: it is stopped as it stands, its history kept
        self.unsaved: str | None = ("stopped before its first checkpoint" if self.stop_pending and state is None
                                    else None)
        if self.unsaved is None:
            self._restore(state)
        self.speed = SpeedMeter(self.trainer.step, self.trainer.elapsed)
        self.where = self.trainer.where()

    # --- persistence ---
    def _restore(self, state: dict[str, Any] | None) -> None:
        note = None
        if state is not None:
            try:
                self.trainer.load_state_dict(state)
            except IncompatibleCheckpoint as err:  # an upgrade must not lose the run: train it again
                if self.stop_pending:  # unless it was stopped: its history stays as it was
                    self.unsaved = f"its checkpoint could not be read ({err})"
                    return
                log.warning("job %s restarts from step 0: %s", self.job_id, err)
                note = f"restarted from step 0: its checkpoint was written by an earlier engine ({err})"
            self.log2_seen = [len(m) for m in self.trainer.log2_models]
        step = self.trainer.step
        sfa = None
        with self.store.transaction():
            # a runner slow to start may find its job handed on: it must not rewind the new owner's history
            self.lab.check_owner(self.job_id, self.worker)
            if note:
                self.lab.forget_checkpoint(self.job_id)
            for r, run_id in enumerate(self.run_ids):
                meta = self.store.get(f"meta/{run_id}")
                if meta is None:
                    continue
                rewound = meta["step"] > step
                self.lab.cut_history(run_id, meta, after=step)
                meta["step"] = step
                if rewound:  # to its checkpoint: what it shows goes back with it
                    sfa = self.trainer.sfa() if sfa is None and step > 0 else sfa
                    self._show_restored(r, run_id, meta, sfa)
                if note:
                    meta["note"] = note
                self.store.set(f"meta/{run_id}", meta)

    def _show_restored(self, r: int, run_id: str, meta: dict[str, Any], sfa: Any) -> None:
        """The latest snapshot and the run's figures as of the restored step (a worker lost after its last
        checkpoint had published later ones): a run stopped while it waits keeps these, not the lost steps'."""
        if sfa is None:  # back to step 0: nothing to show yet
            self.store.delete(f"sfa/{run_id}")
            meta.update(loss=None, mono_ratio=None, mean_bias=None, lr=None)
            return
        bias = self.trainer.weights[r].b1.detach().float().cpu().numpy()
        self.store.set(f"sfa/{run_id}", {"step": self.trainer.step, "sfa": sfa[r].astype(np.float32), "bias": bias})
        chunk = self.store.get(f"chunk/{run_id}/{meta['chunks'] - 1}") if meta["chunks"] else None
        last = chunk["point"] if chunk else {}
        meta.update(loss=self.trainer.final_loss(r), mono_ratio=last.get("mono_ratio"),
                    mean_bias=last.get("mean_bias"), lr=last.get("lr"))

    def _checkpoint(self) -> None:
        buffer = io.BytesIO()
        torch.save({**self.trainer.state_dict(), "run_ids": self.run_ids}, buffer)
        with self.store.transaction():
            if self.lab.check_owner(self.job_id, self.worker) is None:
                self.last_checkpoint = time.monotonic()
                return  # deleted meanwhile: a checkpoint now would be kept by nothing, for good
            self.store.set(f"ckpt/{self.job_id}", buffer.getvalue())
            self.store.set(f"ckpt_step/{self.job_id}", self.trainer.step)
        self.last_checkpoint = time.monotonic()

    def _publish(self) -> bool:
        """Record a snapshot for every live run; False when no run of the job is left to train."""
        snap = self.trainer.snapshot()
        trainer = self.trainer
        sps = self.speed.update(trainer.step, trainer.elapsed)
        eta = (trainer.steps - trainer.step) / sps if sps else None
        # built before the transaction (tens of MB at paper scale), written in it with the failure: a worker lost in
        # between would leave a failed run with nothing kept and no retry
        unreported = {r: meta for r, run in enumerate(snap.runs) if run.error
                      and (meta := self.store.get(f"meta/{self.run_ids[r]}", {})).get("status") == "running"}
        diverged = {r: self._run_file(r, meta) for r, meta in unreported.items()}
        live = 0
        with self.store.transaction():
            self.lab.check_owner(self.job_id, self.worker)
            for r, run_id in enumerate(self.run_ids):
                meta = self.store.get(f"meta/{run_id}")
                if meta is None or meta["status"] != "running":
                    continue
                run = snap.runs[r]
                if run.error:
                    meta.update(status="failed", error=run.error, diverged=True, finished=now(), note=None,
                                eta_seconds=None)
                    if (kept := diverged.get(r)) is not None:  # its weights saved before, to inspect and continue
                        blob, steps = kept
                        self.store.set(f"file/{run_id}", blob)
                        meta.update(has_file=True, weights_step=steps, note=diverged_note(steps))
                        meta["frames"] = sorted(set(meta["frames"]) | self._log2_frames(r, run_id, steps))
                    self.store.set(f"meta/{run_id}", meta)
                    continue
                live += 1
                if len(run.new_losses) == 0:
                    continue  # nothing trained since the last snapshot
                summary = run.summary
                point = {"step": snap.step, "loss": run.loss, "lr": run.lr, "mean_bias": run.mean_bias,
                         "mono_ratio": summary.mono_ratio, "positive_mono_ratio": summary.positive_mono_ratio,
                         "nearly_mono": summary.nearly_mono_neurons, "dead": summary.dead_neurons,
                         "mean_score": summary.mean_score, "elapsed": snap.elapsed}
                start = snap.step - len(run.new_losses)
                self.store.set(f"chunk/{run_id}/{meta['chunks']}",
                               {"start": start, "end": snap.step, "losses": run.new_losses.astype(np.float32),
                                "point": point})
                meta["chunks"] += 1
                bias = trainer.weights[r].b1.detach().float().cpu().numpy()
                # the latest SFA in float32: the views that count mono and dead neurons from it (Sweeps, Compare,
                # the r histogram) then agree with the metrics; the replay frames, many, are float16
                self.store.set(f"sfa/{run_id}", {"step": snap.step, "sfa": run.sfa.astype(np.float32), "bias": bias})
                frames = set(meta["frames"])
                if snap.step % self.frame_every == 0 or snap.done:
                    self.store.set(f"frame/{run_id}/{snap.step}", replay_frame(run.sfa, bias))
                    frames.add(snap.step)
                meta["frames"] = sorted(frames | self._log2_frames(r, run_id))
                # the loss every view shows (run list, API, compare table, run file): the last 5% of steps so far
                meta.update(step=snap.step, loss=trainer.final_loss(r), mono_ratio=summary.mono_ratio,
                            mean_bias=run.mean_bias, lr=run.lr, steps_per_second=sps, eta_seconds=eta,
                            device=self.where, updated=now())
                self.store.set(f"meta/{run_id}", meta)
        self.log2_seen = [len(m) for m in trainer.log2_models]
        return live > 0

    def _log2_frames(self, r: int, run_id: str, up_to: int | None = None) -> set[int]:
        """Write replay frames of the run's log2 weight copies not yet written (those up to step `up_to`: a diverged
        run's kept ones); their steps."""
        trainer, written = self.trainer, set()
        for i, state in enumerate(trainer.log2_models[r][self.log2_seen[r]:], start=self.log2_seen[r]):
            if up_to is not None and 2**i > up_to:
                break
            sfa = single_feature_activations(state["0.weight"][None], state["0.bias"][None],
                                             trainer.embedders[r][None], trainer.base.nonlinearity)[0]
            self.store.set(f"frame/{run_id}/{2 ** i}", replay_frame(sfa.float().cpu().numpy(),
                                                                   state["0.bias"].float().cpu().numpy()))
            written.add(2**i)
        return written

    def _run_file(self, r: int, meta: dict[str, Any]) -> tuple[bytes, int] | None:
        """The run's file as the store keeps it, and the steps it holds; None for a run that diverged before any
        weights were saved."""
        record = build_run_file(self.trainer, r)
        if record is None:
            return None
        if meta.get("start"):  # where its weights came from ({"run", "label", "step"})
            record["started_from"] = meta["start"]
        buffer = io.BytesIO()
        torch.save(record, buffer)
        return buffer.getvalue(), record["metrics"]["steps_trained"]

    def _save_run_files(self) -> None:
        files = {}
        for r, run_id in enumerate(self.run_ids):
            meta = self.store.get(f"meta/{run_id}", {})
            if meta.get("status") != "running":
                continue  # deleted or failed (a diverged run's was saved as it failed)
            files[run_id] = self._run_file(r, meta)
        with self.store.transaction():
            self.lab.check_owner(self.job_id, self.worker)
            for run_id, kept in files.items():
                meta = self.store.get(f"meta/{run_id}")
                if meta is not None and meta["status"] == "running" and kept is not None:
                    self.store.set(f"file/{run_id}", kept[0])
                    self.store.set(f"meta/{run_id}", {**meta, "has_file": True})  # Continue can start from it

    # --- the loop ---
    def run(self) -> None:
        """Train to the end or to a control; a worker that finds its job handed on (JobLost) just lets go."""
        try:
            self._train()
        except JobLost as lost:
            log.warning("%s: this worker stops training it", lost)

    def _release(self, status: str, **fields: Any) -> None:
        self.lab.release(self.job_id, status, worker=self.worker, **fields)

    def _train(self) -> None:
        trainer = self.trainer
        every = self.configs[0].snapshot_every
        steps_per_check = 1
        last_snapshot = time.monotonic()
        last_control = -math.inf  # look at once: a job handed on from a lost worker may carry its stop
        if self.unsaved:
            saved = any(has_run_file(m) for m in map(self.store.get, (f"meta/{r}" for r in self.run_ids)) if m)
            kept = "its run file is the one saved when it was paused" if saved else "no run file"
            return self._release("stopped", finished=now(), note=f"{kept}: {self.unsaved}")
        job = self.lab.heartbeat(self.job_id, self.worker)
        if job is not None and job["control"] == "stop":
            return self._interrupt("stop", job)  # stopped while it waited: saved from its checkpoint, not a step on
        while trainer.step < trainer.steps:
            t0 = time.perf_counter()
            target = next_snapshot_step(trainer.step, every)
            trainer.advance(min(steps_per_check, target - trainer.step))
            took = time.perf_counter() - t0
            # Size the next chunk to take about a tenth of the control interval.
            if took > 0:
                steps_per_check = max(1, min(every, int(steps_per_check * (0.1 * CONTROL_EVERY) / took) or 1))
            clock = time.monotonic()
            at_boundary = trainer.step == target
            if at_boundary or clock - last_snapshot >= SNAPSHOT_EVERY_SECONDS:
                last_snapshot = clock
                if not self._publish():
                    return self._release("stopped", finished=now())
                if clock - self.last_checkpoint >= self.checkpoint_seconds:
                    self._checkpoint()
            if clock - last_control >= CONTROL_EVERY:
                last_control = clock
                self.beat.progressed()
                job = self.lab.heartbeat(self.job_id, self.worker)
                action = "stop" if job is None or not job["runs"] else job["control"]
                if not action and self.shutdown.is_set():  # a stop or pause asked first is done, not put off
                    action = "shutdown"
                if action:
                    return self._interrupt(action, job)
        self._publish()
        self._save_run_files()
        self._release("done", finished=now())  # which deletes the checkpoint, if the job is still this worker's

    def _interrupt(self, action: str, job: dict[str, Any] | None) -> None:
        if job is None:
            return
        live = self._publish()  # runs deleted meanwhile are skipped: their index in the trainer stays theirs
        self._checkpoint()
        if action == "stop" or not live:
            self._save_run_files()
            self._release("stopped", finished=now())
        elif action == "pause":
            self._save_run_files()  # inspected and downloaded as it stands (training on, it is saved again)
            self._release("paused")
        else:  # the worker is shutting down: queue the job again, for the next start or another worker
            self._release("queued", note=f"paused by shutdown at step {self.trainer.step}")


class StopRequest:
    """Set by SIGTERM, or by the app that started this worker dying (kill -9 sends its workers nothing: they would
    train on, unsupervised, holding their runs). A flag, not an Event: a signal handler that took a lock could find
    it held by the code it interrupted."""

    def __init__(self, parent: int | None = None) -> None:
        self._requested = False
        self.parent = parent  # the pid whose death stops this process; None: none watched

    def install(self) -> StopRequest:
        signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self._requested = True

    def is_set(self) -> bool:
        if not self._requested and self.parent is not None and os.getppid() != self.parent:
            log.warning("the app (pid %s) is gone: this worker checkpoints its job and exits", self.parent)
            self._requested = True  # re-parented: the app died without stopping it
        return self._requested


def _start_process(threads: int) -> StopRequest:
    # Ctrl-C reaches the whole process group; the app then stops the workers with SIGTERM, which they
    # answer by checkpointing first instead of dying mid-step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = StopRequest(parent=os.getppid()).install()
    torch.set_num_threads(max(1, threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    return stop


def _work_on(lab: Lab, job_id: str, job: dict[str, Any], stop: StopRequest, checkpoint_seconds: float,
             me: WorkerId, saving_only: bool = False) -> None:
    """Train a claimed job (or, `saving_only`, write a stopped job's run files from its checkpoint)."""
    log.info("%s job %s (runs %s)", "saving" if saving_only else "training", job_id, ", ".join(job["runs"]))
    try:
        with Heartbeat(lab, job_id, me) as beat:
            JobRunner(lab, job_id, job["runs"], stop, checkpoint_seconds, worker=me, beat=beat).run()
    except JobLost as lost:  # handed on, or its runs deleted, before it started training
        log.warning("%s: this worker lets it go", lost)
    except Exception as err:  # a failing run must not take the worker down
        log.error("job %s failed: %s", job_id, traceback.format_exc())
        reason = f"{type(err).__name__}: {err}"
        # a save that failed leaves the job paused, its checkpoint kept: failed, it would offer only Retry, which
        # trains on, the opposite of the Stop asked for
        status, fields = (("paused", {"note": f"its run file could not be saved ({reason}); Stop tries again"})
                          if saving_only else ("failed", {"error": reason, "finished": now()}))
        try:
            lab.release(job_id, status, worker=me, **fields)
        except Exception:  # the store itself failing (a full disk): the job is handed on once its beat stops
            log.exception("job %s: its failure could not be recorded either; retrying in %.0f s", job_id,
                          STORE_RETRY_SECONDS)
            time.sleep(STORE_RETRY_SECONDS)


def worker_main(data_dir: str, threads: int, checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS,
                poll_seconds: float = 0.2) -> None:
    """Entry point of a worker process: claim jobs until SIGTERM."""
    stop = _start_process(threads)
    lab = Lab(DiskStore(data_dir))
    me = WorkerId.here()
    while not stop.is_set():
        claimed = lab.claim(me)
        if claimed is None:
            time.sleep(poll_seconds)
            continue
        _work_on(lab, *claimed, stop, checkpoint_seconds, me, saving_only=claimed[1].get("control") == "stop")


def saver_main(data_dir: str, threads: int, checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS) -> None:
    """Entry point of a short-lived process the pool starts while every worker is busy training: it saves the run
    files of jobs stopped while paused from their checkpoints, trains nothing, and exits when none is left."""
    stop = _start_process(threads)
    lab = Lab(DiskStore(data_dir))
    me = WorkerId.here()
    while not stop.is_set() and (claimed := lab.claim_stopping(me)) is not None:
        _work_on(lab, *claimed, stop, checkpoint_seconds, me, saving_only=True)
