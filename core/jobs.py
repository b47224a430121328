"""The Python API for the app and scripts: submit, list, get, stop, pause, resume, delete, read progress.

A job is one or more runs trained together by one worker (a single run, or a batched comparison).
Stop and pause act on the whole job; delete acts on one run.
"""

from __future__ import annotations

import io
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.config import RunConfig, with_defaults
from core.continuation import (
    CONTINUABLE,
    CannotContinue,
    bias_push,
    continuation_errors,
    continued_label,
    pushed,
    start_weights,
    steps_before,
    weights_to_bytes,
    world_of,
)
from core.runfile import RunFileError, load_run_file
from core.store import DISK_SPARE_BYTES, DiskStore, new_id, now, size_text, valid_id
from core.sweep import value_label
from core.train import batch_key, batched_jobs, device_problem

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 64
# the metrics of a history point, one per snapshot (core.worker publishes them)
POINT_FIELDS = ("step", "loss", "lr", "mean_bias", "mono_ratio", "positive_mono_ratio", "nearly_mono", "dead",
                "mean_score", "elapsed")
HEARTBEAT_TIMEOUT = 20.0  # seconds without a heartbeat before a running job counts as lost


FINISHED = ("done", "stopped", "failed")  # a run in these is not trained again when its job is

# The statuses each control acts on; on any other it would do nothing.
CONTROLS: dict[str, tuple[str, ...]] = {"pause": ("running", "queued"), "resume": ("paused", "interrupted"),
                                        "stop": ("running", "queued", "paused", "interrupted")}


def has_run_file(meta: dict[str, Any]) -> bool:
    """Whether the run's file was written (a run stopped before its first checkpoint has none); runs stored before the
    flag was kept count as having one when done."""
    return meta.get("has_file", meta["status"] == "done")


def failed_with_its_job(meta: dict[str, Any]) -> bool:
    """Whether the run failed because its job did (an error in the worker, not the run's own divergence): resume
    tries the job again from its last checkpoint, which a failed job keeps."""
    return meta["status"] == "failed" and bool(meta.get("job_failed"))


def diverged(meta: dict[str, Any]) -> bool:
    """Whether the run failed by diverging (its loss or weights not finite), not with its job or its record."""
    return meta["status"] == "failed" and bool(meta.get("diverged"))


def can_continue(meta: dict[str, Any]) -> bool:
    """Whether a run has weights a new run can start from: its run file, once done or stopped, or once diverged (up
    to the last weights saved before it; one that failed with its job is retried by Resume instead)."""
    return (meta["status"] in CONTINUABLE or diverged(meta)) and has_run_file(meta)


STOPPING_NOTE = "stopping: "  # a queued run waiting for a worker to save it from its checkpoint (Lab.stop)


def waiting_to_stop(meta: dict[str, Any]) -> bool:
    return meta["status"] == "queued" and (meta.get("note") or "").startswith(STOPPING_NOTE)


def controls_of(meta: dict[str, Any]) -> list[str]:
    """The controls that act on this run, in the order the app shows them: those of its status (not Stop again for
    a run already waiting to stop), and resume (a retry) for a run that failed with its job."""
    return ([action for action, statuses in CONTROLS.items()
             if meta["status"] in statuses and not (action == "stop" and waiting_to_stop(meta))]
            + (["resume"] if failed_with_its_job(meta) else []))


class QueueFull(RuntimeError):
    """More runs are waiting than the queue allows."""


class UnknownRun(KeyError):
    """No run with that id."""


class JobLost(RuntimeError):
    """The job is no longer this worker's: it went silent past the heartbeat timeout and the job was given to
    another (or queued for one). Whatever it would publish now would interleave with the new worker's."""


class InvalidConfig(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, it reaches its parent whole
        return InvalidConfig, (self.errors,)


@dataclass(frozen=True)
class WorkerId:
    host: str
    pid: int

    @staticmethod
    def here() -> WorkerId:
        return WorkerId(socket.gethostname(), os.getpid())

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid}


def process_exists(pid: Any) -> bool:
    """Whether a process with this pid runs on this machine (a worker's, or one that reused its pid)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def current(meta: dict[str, Any]) -> dict[str, Any]:
    """A run's metadata as this version reads it: a run stored before a config field existed has its default."""
    return {**meta, "config": with_defaults(meta["config"])}


class Lab:
    """Runs and their progress, on any store with get/set/delete/transaction."""

    def __init__(self, store: DiskStore, max_queued: int = DEFAULT_MAX_QUEUED,
                 dispatch: Callable[[str], None] | None = None, local_workers: bool = False):
        self.store = store
        self.max_queued = max_queued
        # Workers on this machine (embedded) can only use its devices; Celery workers may have GPUs it lacks.
        self.local_workers = local_workers
        # Embedded workers poll the queue; with Celery, each queued job is also sent as a task.
        self.dispatch = dispatch or (lambda _job_id: None)

    # --- submitting ---
    def submit(self, config: RunConfig, label: str = "") -> str:
        return self.submit_group([config], [label])[0]

    def continue_run(self, parent_id: str, config: RunConfig, label: str | None = None,
                     step: int | None = None) -> str:
        """Queue a run that starts from a finished or stopped run's final weights, or those saved after `step` (1, 2,
        4, ...), trained with `config` (core.continuation); labelled with its parent's and what changed unless
        `label` is given. Its start is copied: deleting the parent loses nothing."""
        return self.continue_runs(parent_id, [config], step, [label])[0]

    def continue_runs(self, parent_id: str, configs: list[RunConfig], step: int | None = None,
                      labels: list[str | None] | None = None) -> list[str]:
        """continue_run for several configs from one start, batched into jobs as a sweep's runs are
        (core.train.batched_jobs): the parent's run file is read once, and nothing is queued unless every one
        can be."""
        meta = self.get(parent_id)
        blob = self.run_file(parent_id) if can_continue(meta) else None
        if blob is None:
            why = ("it failed with its job: Resume retries it from its last checkpoint" if failed_with_its_job(meta)
                   else "it diverged before any weights were saved" if diverged(meta)
                   else "only a done, stopped or diverged run has weights to continue from"
                   if meta["status"] not in CONTINUABLE
                   else "it was stopped before it trained a step: nothing was saved" if meta["step"] == 0
                   else "it was stopped before its first checkpoint: no weights were saved")
            raise CannotContinue(f"run {parent_id} is {meta['status']}: {why}")
        parent = self.config(parent_id)
        errors = {name: message for config in configs
                  for name, message in continuation_errors(parent_id, parent, config).items()}
        try:
            record = load_run_file(io.BytesIO(blob))
        except RunFileError as err:
            raise CannotContinue(f"run {parent_id}'s run file cannot be read: {err}") from err
        try:
            weights = start_weights(record, step)
        except ValueError as err:
            errors["from_step"] = f"from_step {err}"
        if errors:
            raise InvalidConfig(errors)
        final_step = (record.get("metrics") or {}).get("steps_trained", meta["step"])  # a diverged run's: before it
        start = {"run": parent_id, "label": meta["label"], "step": final_step if step is None else step}
        start["offset"] = steps_before(meta.get("start")) + start["step"]  # kept: the parent may be deleted
        pushes = [bias_push(parent, config) for config in configs]
        blobs = {push: weights_to_bytes(pushed(weights, push), world_of(record)) for push in set(pushes)}
        starts = [({**start, "bias_push": push}, blobs[push]) for push in pushes]
        at = final_step if step is None and diverged(meta) else step  # not the end it reached: say where
        labels = [label or continued_label(meta["label"], parent, config, at)
                  for config, label in zip(configs, labels or [None] * len(configs))]
        return self.submit_batched(configs, labels, starts=starts)

    def submit_batched(self, configs: list[RunConfig], labels: list[str] | None = None,
                       sweeps: list[dict[str, Any]] | None = None,
                       starts: list[tuple[dict[str, Any], bytes] | None] | None = None) -> list[str]:
        """Queue runs in as few jobs as pay (core.train.batched_jobs), all or none if the queue lacks room for
        them; `sweeps` and `starts` as for submit_group. Returns the run ids in the order of `configs`."""
        if too_many := self.too_many_runs(len(configs)):
            raise InvalidConfig({"runs": too_many})
        jobs = batched_jobs(configs)
        for job in jobs:
            self._check_group([configs[i] for i in job])
        if no_room := self.disk_problem(configs):
            raise InvalidConfig({"disk": no_room})
        ids: dict[int, str] = {}
        queued: list[str] = []
        # one transaction for every job: another client's submit in between must not leave half a sweep queued
        with self.store.transaction():
            waiting = self.queued_run_count()
            if waiting + len(configs) > self.max_queued:
                asked = "1 run" if len(configs) == 1 else f"{len(configs)} runs"
                raise QueueFull(f"the queue is full: {asked} asked for, {waiting} waiting (limit {self.max_queued}); "
                                "wait for some to finish or stop queued runs")
            for job in jobs:
                job_id, run_ids = self._queue_group(*(None if items is None else [items[i] for i in job]
                                                      for items in (configs, labels, sweeps, starts)))
                ids.update(zip(job, run_ids))
                queued.append(job_id)
        for job_id in queued:  # after the commit: a Celery task must find its job queued
            self._send(job_id)
        return [ids[i] for i in range(len(configs))]

    def submit_group(self, configs: list[RunConfig], labels: list[str] | None = None,
                     sweeps: list[dict[str, Any]] | None = None,
                     starts: list[tuple[dict[str, Any], bytes] | None] | None = None) -> list[str]:
        """Queue runs to train together as one batched job (they must share array shapes).

        `sweeps` optionally tags each run with its sweep ({"id", "name", "field", "value"}); `starts` gives a
        continued run where it came from ({"run", "label", "step"}) and its starting weights."""
        self._check_group(configs)
        if no_room := self.disk_problem(configs):
            raise InvalidConfig({"disk": no_room})
        with self.store.transaction():
            waiting = self.queued_run_count()
            if waiting + len(configs) > self.max_queued:
                raise QueueFull(f"the queue is full: {waiting} runs are waiting (limit {self.max_queued}); "
                                "wait for some to finish or stop queued runs")
            job_id, run_ids = self._queue_group(configs, labels, sweeps, starts)
        self._send(job_id)
        return run_ids

    def _check_group(self, configs: list[RunConfig]) -> None:
        if not configs:
            raise ValueError("nothing to submit")
        for config in configs:
            errors = self.config_errors(config)
            if errors:
                raise InvalidConfig(errors)
        if len({batch_key(c) for c in configs}) != 1:
            raise ValueError("runs submitted together must share all array shapes; submit them separately")

    def _queue_group(self, configs: list[RunConfig], labels: list[str] | None,
                     sweeps: list[dict[str, Any]] | None,
                     starts: list[tuple[dict[str, Any], bytes] | None] | None) -> tuple[str, list[str]]:
        """Write one job and its runs to the queue (inside the caller's transaction); returns (job id, run ids)."""
        labels = labels or [""] * len(configs)
        job_id = new_id()
        run_ids = [new_id() for _ in configs]
        for i, (run_id, config, label) in enumerate(zip(run_ids, configs, labels)):
            self.store.set(f"meta/{run_id}", {
                "sweep": sweeps[i] if sweeps else None,
                "id": run_id, "job": job_id, "label": label, "config": config.to_dict(), "status": "queued",
                "created": now(), "started": None, "finished": None, "step": 0, "steps": config.steps,
                "eta_seconds": None, "steps_per_second": None, "loss": None, "mono_ratio": None,
                "mean_bias": None, "lr": config.lr, "error": None, "chunks": 0, "frames": [], "note": None,
                "start": starts[i][0] if starts and starts[i] else None,
            })
            if starts and starts[i]:
                self.store.set(f"start/{run_id}", starts[i][1])
        self.store.set(f"job/{job_id}", {"runs": run_ids, "control": None, "worker": None, "heartbeat": None})
        self.store.set("index", self.store.get("index", []) + run_ids)
        self.store.set("queue", self.store.get("queue", []) + [job_id])
        return job_id, run_ids

    def _send(self, job_id: str) -> None:
        """Hand a queued job to the workers (Celery: a task). One the broker did not take stays queued and is kept to
        be sent again (resend): the user's runs are queued either way."""
        try:
            self.dispatch(job_id)
        except Exception as err:
            log.warning("job %s is queued, but its task was not sent (%s); it is sent again later", job_id, err)
            try:
                with self.store.transaction():
                    self.store.set("unsent", [*self.store.get("unsent", []), job_id])
            except Exception:  # the store away too (one Redis): the app's next start sends every queued job
                log.exception("job %s: could not note its task as unsent", job_id)

    def resend(self, every_queued: bool = False) -> list[str]:
        """Send again the queued jobs whose task did not reach the broker, or (at the app's start) every queued job:
        one whose task was sent as the app was killed, or purged from the broker, would wait forever. A job sent
        twice is trained once: only the first task finds it queued (Lab.claim_job). Returns the jobs sent."""
        queue = self.store.get("queue", [])
        unsent = self.store.get("unsent", [])
        sent, failed = [], []
        for job_id in dict.fromkeys(queue if every_queued else [j for j in unsent if j in queue]):
            try:
                self.dispatch(job_id)
            except Exception as err:  # the broker still away: the next round tries again
                log.warning("job %s: its task could not be sent again (%s)", job_id, err)
                failed.append(job_id)
                continue
            sent.append(job_id)
        if unsent or failed:
            with self.store.transaction():  # and those no longer queued (taken, stopped, deleted) need none
                queue = self.store.get("queue", [])
                waiting = dict.fromkeys([*self.store.get("unsent", []), *failed])
                kept = [j for j in waiting if j in queue and j not in sent]
                self.store.set("unsent", kept)
        return sent

    def config_errors(self, config: RunConfig) -> dict[str, str]:
        """The config's own problems, and a device this lab's workers lack."""
        errors = config.validate()
        problem = device_problem(config.device) if self.local_workers else None
        return {**errors, "device": problem} if problem else errors

    def disk_problem(self, configs: list[RunConfig]) -> str | None:
        """Why the store's disk cannot hold what these (valid) runs will keep (RunConfig.disk_estimate, an upper
        bound) beside a small spare and what runs already queued or training may still write, else None: refused
        now, not failed mid-run on a full disk. None for a store with no disk (Redis)."""
        free = getattr(self.store, "free_bytes", None)
        if free is None:
            return None
        parts: dict[str, int] = {}
        for config in configs:
            for part, size in config.disk_estimate().items():
                parts[part] = parts.get(part, 0) + size
        beyond_spare = free() - DISK_SPARE_BYTES
        pending = self.still_to_write()
        if sum(parts.values()) <= beyond_spare - pending:
            return None
        what = "this run" if len(configs) == 1 else f"these {len(configs)} runs"
        listed = ", ".join(f"{part} {size_text(size)}" for part, size in parts.items())
        promised = f", and runs queued or training may still write {size_text(pending)} of it" if pending else ""
        return (f"{what} would keep up to {size_text(sum(parts.values()))} in the run store ({listed}), and its disk "
                f"has {size_text(max(0, beyond_spare))} free beyond the {DISK_SPARE_BYTES // 2**20} MiB kept spare"
                f"{promised}: fewer neurons or features (each replay frame is n_neurons x n_features), fewer steps or "
                "runs, or free space (delete runs you no longer need)")

    def still_to_write(self) -> int:
        """Bytes the runs not finished may yet add to the store, at most: their disk_estimate, less the share of
        frames and history their steps done have written; their run file in full, and their checkpoints in full
        before they trained a step, else the one a new checkpoint adds beside the one on disk."""
        total = 0
        for meta in self.list():
            if meta["status"] in FINISHED:
                continue
            parts = RunConfig(**meta["config"]).disk_estimate()
            left = 1.0 - min(1.0, meta["step"] / max(1, meta["steps"]))
            checkpoints = parts["checkpoints"] if meta["step"] == 0 else parts["checkpoints"] // 2
            total += parts["run file"] + checkpoints + round(left * (parts["replay frames"] + parts["history"]))
        return total

    def too_many_runs(self, count: int) -> str | None:
        """Why `count` runs asked for at once can never be queued here (a busy queue is QueueFull: it passes)."""
        if count <= self.max_queued:
            return None
        return (f"{count} runs asked for at once, and this lab's queue takes at most {self.max_queued} "
                f"(run_app.py --max-queued): fewer values or seeds")

    def submit_sweep(self, sweep: Any) -> list[str]:
        """Queue every run of a core.sweep.Sweep, one batched job per group of same-shaped runs."""
        # each run judged with its own swept value (the base, with the preset's, may fail where no run does); the
        # device, which no sweep varies, once
        errors = sweep.validate() or self.config_errors(sweep.configs()[0])
        if not errors and (too_many := self.too_many_runs(len(sweep.runs()))):
            errors = {"seeds": too_many}
        if errors:
            raise InvalidConfig(errors)
        runs = sweep.runs()
        sweep_id = new_id()
        tags = [{"id": sweep_id, "name": sweep.title, "field": sweep.field, "value": value} for value, _, _ in runs]
        labels = [f"{sweep.title}: {sweep.field}={value_label(value)}, seed {seed}" for value, seed, _ in runs]
        return self.submit_batched([config for _, _, config in runs], labels, tags)

    def sweeps(self) -> dict[str, list[dict[str, Any]]]:
        """Runs grouped by sweep id, oldest sweep first."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for meta in self.list():
            if meta.get("sweep"):
                groups.setdefault(meta["sweep"]["id"], []).append(meta)
        return groups

    def queued_run_count(self) -> int:
        """Runs waiting to train: a job queued only to be stopped (its files saved) takes no room."""
        jobs = (self.store.get(f"job/{j}", {"runs": []}) for j in self.store.get("queue", []))
        return sum(len(job["runs"]) for job in jobs if job.get("control") != "stop")

    # --- reading ---
    def list(self) -> list[dict[str, Any]]:
        metas = (self.store.get(f"meta/{run_id}") for run_id in self.store.get("index", []))
        return [current(m) for m in metas if m is not None]

    def get(self, run_id: str) -> dict[str, Any]:
        meta = self.store.get(f"meta/{run_id}") if valid_id(run_id) else None
        if meta is None:
            raise UnknownRun(run_id)
        return current(meta)

    def exists(self, run_id: str) -> bool:
        return valid_id(run_id) and self.store.get(f"meta/{run_id}") is not None

    def config(self, run_id: str) -> RunConfig:
        return RunConfig(**self.get(run_id)["config"])

    def latest_snapshot(self, run_id: str) -> dict[str, Any] | None:
        """{"step", "sfa" (k, N) float32, "bias" (k,)} of the newest snapshot, or None before the first."""
        self.get(run_id)
        snap = self.store.get(f"sfa/{run_id}")
        if snap is None:
            return None
        return {"step": snap["step"], "sfa": snap["sfa"].astype(np.float32), "bias": snap["bias"]}

    def history(self, run_id: str, since: int = 0) -> dict[str, Any]:
        """Per-step losses and per-snapshot metric points from chunk `since` on; "next" is the chunk to ask next."""
        meta = self.get(run_id)
        chunks = [self.store.get(f"chunk/{run_id}/{n}") for n in range(since, meta["chunks"])]
        chunks = [c for c in chunks if c is not None]
        losses = [c["losses"] for c in chunks]
        starts = [np.arange(c["start"] + 1, c["end"] + 1) for c in chunks]
        points = [c["point"] for c in chunks]
        keys = points[0].keys() if points else ()
        return {
            "next": since + len(chunks),
            "loss_steps": np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64),
            "losses": np.concatenate(losses) if losses else np.zeros(0, dtype=np.float32),
            "points": {k: np.array([p[k] for p in points]) for k in keys},
        }

    def frame_steps(self, run_id: str) -> list[int]:
        return list(self.get(run_id)["frames"])

    def frame(self, run_id: str, step: int) -> dict[str, Any] | None:
        """{"step", "sfa" (k, N) float32, "bias" (k,) or None} of a stored replay frame, as `latest_snapshot`.
        Frames written before they kept biases are the SFA alone: their "bias" is None."""
        self.get(run_id)
        frame = self.store.get(f"frame/{run_id}/{int(step)}")
        if frame is None:
            return None
        sfa, bias = (frame["sfa"], frame.get("bias")) if isinstance(frame, dict) else (frame, None)
        return {"step": int(step), "sfa": sfa.astype(np.float32), "bias": bias}

    def run_file(self, run_id: str) -> bytes | None:
        self.get(run_id)
        return self.store.get(f"file/{run_id}")

    # --- control ---
    def _job_of(self, run_id: str) -> tuple[str, dict[str, Any]]:
        job_id = self.get(run_id)["job"]
        return job_id, self.store.get(f"job/{job_id}")

    def _set_status(self, run_ids: list[str], status: str, **fields: Any) -> None:
        for run_id in run_ids:
            meta = self.store.get(f"meta/{run_id}")
            if meta is not None:
                meta.update(status=status, **fields)
                self.store.set(f"meta/{run_id}", meta)

    def _unqueue(self, job_id: str) -> bool:
        queue = self.store.get("queue", [])
        if job_id not in queue:
            return False
        self.store.set("queue", [j for j in queue if j != job_id])
        return True

    def _control(self, run_id: str, action: str) -> None:
        handed_on = False
        with self.store.transaction():
            job_id, job = self._job_of(run_id)
            status = self.get(run_id)["status"]
            trained = self._checkpoint_step(job_id)
            if status == "running":
                job["control"] = action
                self.store.set(f"job/{job_id}", job)
            elif status in ("queued", "paused", "interrupted") and action == "stop" and trained:
                # its checkpoint is the only copy of what it learnt: a worker writes the run files from it (the
                # stop a worker does), first in this lab's queue, instead of the weights being thrown away
                job["control"] = "stop"
                self.store.set(f"job/{job_id}", job)
                self._unqueue(job_id)
                self.store.set("queue", [job_id] + self.store.get("queue", []))
                self._set_status(self._unfinished(job), "queued", finished=None,
                                 note=f"{STOPPING_NOTE}a worker saves it from step {trained:,}, its last checkpoint, "
                                      "once one is free")
                handed_on = True
            elif status in ("queued", "paused", "interrupted"):
                self._unqueue(job_id)
                target = "stopped" if action == "stop" else "paused"
                was_stopping = job.get("control") == "stop"
                if was_stopping:  # paused instead: it keeps its checkpoint, and resumes as any paused run
                    job["control"] = None
                    self.store.set(f"job/{job_id}", job)
                unfinished = self._unfinished(job)
                self._set_status(unfinished, target, finished=now() if target == "stopped" else None,
                                 **({"note": None} if was_stopping else {}))
                if target == "stopped":  # no checkpoint: nothing it learnt was kept
                    self.forget_checkpoint(job_id)
                    self._rewind_to_start(unfinished)
        if handed_on:
            self._send(job_id)

    def _rewind_to_start(self, run_ids: list[str]) -> None:
        """Runs stopped with no checkpoint (their worker was lost before its first): the steps they showed were not
        saved, so they show none, as a run stopped before it trained (Continue and the inspector then agree)."""
        for run_id in dict.fromkeys(run_ids):
            meta = self.store.get(f"meta/{run_id}")
            if meta is None or meta["step"] == 0:
                continue
            self.cut_history(run_id, meta)
            self.store.delete(f"sfa/{run_id}")
            note = f"the {meta['step']:,} steps it showed were not saved: its worker stopped before its first " \
                   "checkpoint"
            meta.update(step=0, loss=None, mono_ratio=None, mean_bias=None, lr=None, eta_seconds=None,
                        steps_per_second=None, note=note)
            self.store.set(f"meta/{run_id}", meta)

    def cut_history(self, run_id: str, meta: dict[str, Any], after: int = 0) -> None:
        """Delete the run's history chunks and replay frames past step `after` (all of them by default) and note
        it in `meta`, which the caller writes in its transaction; browsers then re-read the history
        (app.live.history_epoch)."""
        chunks = meta["chunks"]
        while chunks > 0:
            if after > 0:  # chunks end at steps >= 1: with `after` 0 none is kept, and none need be read
                chunk = self.store.get(f"chunk/{run_id}/{chunks - 1}")
                if chunk is not None and chunk["end"] <= after:
                    break
            chunks -= 1
            self.store.delete(f"chunk/{run_id}/{chunks}")
        if chunks < meta["chunks"]:
            meta.update(chunks=chunks, history_epoch=meta.get("history_epoch", 0) + 1)
        for frame_step in meta["frames"]:
            if frame_step > after:
                self.store.delete(f"frame/{run_id}/{frame_step}")
        meta["frames"] = [s for s in meta["frames"] if s <= after]

    def job_runs(self, run_id: str) -> list[str]:
        """The runs trained in one job with `run_id` (itself included): stop, pause and resume act on them all."""
        job = self._job_of(run_id)[1]
        return list(job["runs"]) if job else [run_id]

    def _unfinished(self, job: dict[str, Any]) -> list[str]:
        """The job's runs a control acts on: not those done, stopped or failed (a run that diverged in it)."""
        return [r for r in job["runs"] if self.store.get(f"meta/{r}", {"status": "done"})["status"] not in FINISHED]

    def stop(self, run_id: str) -> None:
        """Stop training (the whole job); the run keeps what it learnt so far."""
        self._control(run_id, "stop")

    def pause(self, run_id: str) -> None:
        """Checkpoint and free the worker; `resume` continues exactly where it stopped."""
        if self.get(run_id)["status"] in ("running", "queued"):
            self._control(run_id, "pause")

    def resume(self, run_id: str) -> None:
        """Queue a paused or interrupted job again, or one whose runs failed with it (a retry); it continues from
        its last checkpoint (from the start if none was written)."""
        with self.store.transaction():
            job_id, job = self._job_of(run_id)
            if "resume" not in controls_of(self.get(run_id)):
                return
            waiting = self.queued_run_count()
            if waiting + len(job["runs"]) > self.max_queued:
                raise QueueFull(f"the queue is full: {waiting} runs are waiting (limit {self.max_queued})")
            job["control"] = None
            self.store.set(f"job/{job_id}", job)
            resumable = [r for r in job["runs"] if "resume" in controls_of(self.store.get(f"meta/{r}", {"status": ""}))]
            self._set_status(resumable, "queued", note=None, error=None, job_failed=False, finished=None)
            self.store.set("queue", self.store.get("queue", []) + [job_id])
        self._send(job_id)

    def delete(self, run_id: str) -> None:
        """Remove a run and everything stored for it (a running job stops when none of its runs is left)."""
        with self.store.transaction():
            job_id, job = self._job_of(run_id)
            self.store.set("index", [r for r in self.store.get("index", []) if r != run_id])
            job = job or {"runs": [], "worker": None}  # its record lost (recover() failed the run): nothing to stop
            job["runs"] = [r for r in job["runs"] if r != run_id]
            if not job["runs"]:
                if self._unqueue(job_id) or job["worker"] is None:
                    self.store.delete(f"job/{job_id}")
                    self.forget_checkpoint(job_id)
                else:  # its worker stops it; if that worker is gone, recover() removes it
                    job["control"] = "stop"
                    self.store.set(f"job/{job_id}", job)
                    self.store.set("emptied", self.store.get("emptied", []) + [job_id])
            else:
                self.store.set(f"job/{job_id}", job)
            meta = self.store.get(f"meta/{run_id}")
            self.store.delete(f"meta/{run_id}")
            # its keys, named from its record: one transaction, and no walk over every key of a large lab
            self.cut_history(run_id, meta)
            for key in ("sfa", "file", "start"):
                self.store.delete(f"{key}/{run_id}")

    # --- worker side ---
    def claim(self, worker: WorkerId) -> tuple[str, dict[str, Any]] | None:
        """Take the oldest queued job for this worker, or None."""
        with self.store.transaction():
            queue = self.store.get("queue", [])
            while queue:
                job_id = queue.pop(0)
                job = self.store.get(f"job/{job_id}")
                if job is None or not job["runs"]:
                    continue
                self.store.set("queue", queue)
                self._hand_to(job_id, job, worker)
                return job_id, job
            self.store.set("queue", queue)
        return None

    def claim_stopping(self, worker: WorkerId) -> tuple[str, dict[str, Any]] | None:
        """Take the oldest queued job waiting only to be stopped (its run files saved from its checkpoint), or None."""
        with self.store.transaction():
            waiting = self.waiting_to_be_saved()
            if not waiting:
                return None
            job_id, job = waiting[0], self.store.get(f"job/{waiting[0]}")
            self._unqueue(job_id)
            self._hand_to(job_id, job, worker)
            return job_id, job

    def waiting_to_be_saved(self) -> list[str]:
        """Queued jobs that only wait for a worker to save their run files (stopped while paused or interrupted)."""
        jobs = [(job_id, self.store.get(f"job/{job_id}")) for job_id in self.store.get("queue", [])]
        return [job_id for job_id, job in jobs if job is not None and job["runs"] and job.get("control") == "stop"]

    def claim_job(self, job_id: str, worker: WorkerId,
                  is_dead: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        """Take one named job (a Celery task's): if it waits in the queue, or its worker is known dead."""
        with self.store.transaction():
            job = self.store.get(f"job/{job_id}")
            if job is None or not job["runs"]:
                return None
            queue = self.store.get("queue", [])
            orphaned = job.get("worker") is not None and is_dead is not None and is_dead(job["worker"])
            if job_id not in queue and not orphaned:
                return None
            self.store.set("queue", [j for j in queue if j != job_id])
            self._hand_to(job_id, job, worker, orphaned)
            return job

    def _hand_to(self, job_id: str, job: dict[str, Any], worker: WorkerId, orphaned: bool = False) -> None:
        """Give a claimed job to `worker` and mark its unfinished runs running (inside the claim's transaction)."""
        job.update(worker=worker.as_dict(), heartbeat=self.store.clock())  # a stop asked of a lost worker stays
        self.store.set(f"job/{job_id}", job)
        step = self._checkpoint_step(job_id)
        # an earlier note (paused, shut down) is over; the step it goes on from explains a rewind
        note = (None if job.get("control") == "stop"  # claimed only to be stopped: it trains no further
                else f"resumed after its worker died, from step {step}" if orphaned
                else f"resumed from step {step}" if step else None)
        for run_id in job["runs"]:
            meta = self.store.get(f"meta/{run_id}")
            if meta is not None and meta["status"] not in FINISHED:
                meta.update(status="running", started=meta["started"] or now(), note=note, trained_by=worker.as_dict())
                self.store.set(f"meta/{run_id}", meta)

    def check_owner(self, job_id: str, worker: WorkerId) -> dict[str, Any] | None:
        """The job (None if deleted); raises JobLost if another worker, or none, holds it now. Call inside a
        transaction with what the worker then writes."""
        job = self.store.get(f"job/{job_id}")
        if job is not None and job.get("worker") != worker.as_dict():
            raise JobLost(f"job {job_id} was handed on after its worker {worker.as_dict()} went silent")
        return job

    def heartbeat(self, job_id: str, worker: WorkerId) -> dict[str, Any] | None:
        """Record that the job's worker is alive; return the job (with its control flag), None if deleted.
        Raises JobLost if the job is no longer this worker's."""
        with self.store.transaction():
            job = self.check_owner(job_id, worker)
            if job is not None:
                job["heartbeat"] = self.store.clock()
                self.store.set(f"job/{job_id}", job)
        return job

    def release(self, job_id: str, status: str, worker: WorkerId | None = None, **fields: Any) -> None:
        """The worker lets go of a job, leaving its runs in `status`; a `worker` that no longer holds the job
        changes nothing. A stop or pause asked for while the job was running is kept when the job goes back to
        the queue (its worker was lost, or shut down): pause leaves it paused, stop reaches the next worker."""
        with self.store.transaction():
            job = self.store.get(f"job/{job_id}")
            if job is None or (worker is not None and job.get("worker") != worker.as_dict()):
                return
            pending = job.get("control") if status == "queued" else None
            if pending == "pause":
                status = "paused"
                if "note" in fields:
                    fields["note"] = f"paused at step {self._checkpoint_step(job_id)}, its last checkpoint"
            if status in ("paused", "stopped"):  # how its training went on ("resumed from step N") is over
                fields.setdefault("note", None)
            job.update(worker=None, control="stop" if pending == "stop" else None)
            self.store.set(f"job/{job_id}", job)
            live = [r for r in job["runs"] if self.store.get(f"meta/{r}", {}).get("status") == "running"]
            # runs that fail with their job can be retried (resume), unlike a run that diverged; the note of the
            # attempt that failed ("resumed from step N") is over
            failed = {"job_failed": True, "note": None} if status == "failed" else {}
            self._set_status(live, status, **{**failed, **fields})
            if status == "queued":
                self.store.set("queue", [job_id] + self.store.get("queue", []))
            if not job["runs"] or status in ("done", "stopped"):  # nothing left to resume (a failed job keeps its
                self.forget_checkpoint(job_id)                     # last good checkpoint for a retry)
            if not job["runs"]:
                self.store.delete(f"job/{job_id}")
        if status == "queued":
            self._send(job_id)

    def recover(self, is_alive: Any = None, auto_resume: bool = True) -> list[str]:
        """Requeue (or mark interrupted) running jobs whose worker died; returns their run ids.

        `is_alive(worker_dict)` says whether a worker process still exists (None: judge by heartbeat)."""
        lost: list[str] = []
        clock = self.store.clock()  # one read of it (a round trip on Redis) for every job judged
        for meta in self.list():
            if meta["status"] != "running":
                continue
            job = self.store.get(f"job/{meta['job']}")
            if job is None:
                with self.store.transaction():  # unless it was deleted meanwhile: a record nothing lists
                    if self.store.get(f"job/{meta['job']}") is None and self.exists(meta["id"]):
                        self._set_status([meta["id"]], "failed", error="its job record was lost", finished=now())
                continue
            if self._lost(job, is_alive, clock):
                seen = job.get("worker")
                with self.store.transaction():
                    job = self.store.get(f"job/{meta['job']}")
                    still = self.store.get(f"meta/{meta['id']}")
                    # a heartbeat came while it waited, or its worker let go (paused, done): not lost
                    if (job is None or job.get("worker") != seen or not self._lost(job, is_alive, clock)
                            or still is None or still["status"] != "running"):
                        continue
                    lost += job["runs"]
                    status = "queued" if auto_resume else "interrupted"
                    step = self._checkpoint_step(meta["job"])
                    self.release(meta["job"], status, note=f"interrupted; resumed from step {step}")
        self._remove_emptied(is_alive, clock)
        return lost

    @staticmethod
    def _lost(job: dict[str, Any], is_alive: Any, clock: float) -> bool:
        """`clock` is the store's (heartbeats are stamped by it): a worker machine's clock 20 s behind the app's
        would lose its jobs."""
        worker, beat = job.get("worker"), job.get("heartbeat") or 0
        return (worker is None or (is_alive is not None and not is_alive(worker))
                or clock - beat > HEARTBEAT_TIMEOUT)

    def _remove_emptied(self, is_alive: Any, clock: float) -> None:
        """Jobs whose every run was deleted while a worker held them: gone once that worker is (else their record
        and checkpoint stayed forever, as no run leads to them)."""
        if not self.store.get("emptied"):
            return
        with self.store.transaction():
            kept = []
            for job_id in self.store.get("emptied", []):
                job = self.store.get(f"job/{job_id}")
                if job is None or job["runs"]:  # released by its worker, or (never) given runs again
                    continue
                if job.get("worker") is not None and not self._lost(job, is_alive, clock):
                    kept.append(job_id)
                    continue
                self.store.delete(f"job/{job_id}")
                self.forget_checkpoint(job_id)
            self.store.set("emptied", kept)

    def forget_checkpoint(self, job_id: str) -> None:
        self.store.delete(f"ckpt/{job_id}")
        self.store.delete(f"ckpt_step/{job_id}")

    def _checkpoint_step(self, job_id: str) -> int:
        info = self.store.get(f"ckpt_step/{job_id}")
        return int(info) if info is not None else 0
