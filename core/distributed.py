"""Celery workers with Redis, for users who outgrow one machine.

    LAB_REDIS_URL=redis://HOST:6379/0 celery -A core.distributed worker --concurrency 1 -Q lab

Redis is both the broker and the run store (core.redis_store): runs, progress, checkpoints and run
files all live there, so workers need no shared disk. The app (`run_app.py --backend celery`) sends a
task per queued job; a worker claims it, trains it with the same JobRunner as the embedded workers
(stop / pause / resume through the store), and acknowledges it only when done (acks_late). If a
worker dies mid-run, the task is delivered again, or the app's supervisor notices the missing
heartbeat and queues the job again; either way it resumes from its last checkpoint.

No torch computation happens at import: the prefork pool forks after this module is imported, and a
process that ran torch's threaded code before forking leaves children that deadlock.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from typing import Any

from celery import Celery, signals

from core.config import env_setting
from core.jobs import JobLost, Lab, WorkerId, process_exists
from core.redis_store import RedisStore

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
QUEUE = "lab"
log = logging.getLogger(__name__)


def redis_url() -> str:
    return env_setting("LAB_REDIS_URL", DEFAULT_REDIS_URL)


def worker_settings() -> tuple[int, float]:
    """A worker's torch threads and checkpoint interval (LAB_THREADS, LAB_CHECKPOINT_SECONDS; empty: the
    defaults); a bad value raises ValueError naming the variable, at the worker's start."""
    from core.pool import default_threads
    from core.worker import CHECKPOINT_EVERY_SECONDS

    threads_text = env_setting("LAB_THREADS", str(default_threads(1)))
    seconds_text = env_setting("LAB_CHECKPOINT_SECONDS", str(CHECKPOINT_EVERY_SECONDS))
    try:
        threads = int(threads_text)
        if not 1 <= threads <= 1024:
            raise ValueError
    except ValueError:
        raise ValueError(f"LAB_THREADS must be an integer from 1 to 1024, got {threads_text!r}") from None
    try:
        seconds = float(seconds_text)
        if not 0 < seconds <= 3600:
            raise ValueError
    except ValueError:
        raise ValueError(f"LAB_CHECKPOINT_SECONDS must be a number of seconds in (0, 3600], got {seconds_text!r}") \
            from None
    return threads, seconds


app = Celery("monosemanticity_lab", broker=redis_url())
app.conf.update(
    task_acks_late=True,  # a task is acknowledged only once its job ends: a dead worker's job is redelivered
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # one job at a time per process: long tasks must not wait behind others
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def send_job(job_id: str, url: str) -> None:
    """Send a job's task to the broker at `url` (the Lab's own Redis, whatever the app was created with)."""
    with app.connection_for_write(url) as connection:
        train_job.apply_async(args=[job_id], queue=QUEUE, connection=connection)


def lab_for(url: str | None = None, max_queued: int = 64) -> Lab:
    """A Lab on the Redis store whose queued jobs are sent to the Celery workers."""
    url = url or redis_url()
    return Lab(RedisStore(url), max_queued=max_queued, dispatch=lambda job_id: send_job(job_id, url))


def is_dead_here(worker: dict[str, Any]) -> bool:
    """A worker process on this machine that no longer exists (its job may be taken over at once)."""
    return worker.get("host") == socket.gethostname() and "pid" in worker and not process_exists(worker["pid"])


# Set in the worker's main process at start, before the pool forks: its children inherit it. Keying the shutdown mark
# on it, not on a pid, keeps a later process that reuses a pid from reading an earlier worker's shutdown.
START_TOKEN = "LAB_WORKER_START"


def shutdown_key(token: str) -> str:
    return f"shutdown/{token}"


def _quick_store() -> RedisStore:
    """For signal handlers: a Redis that does not answer must not hold up Ctrl-C for minutes."""
    return RedisStore(redis_url(), timeout=2.0)


@signals.worker_init.connect
def _new_start_token(**_: Any) -> None:
    if not logging.getLogger().handlers:  # Celery leaves the root logger to us: say what this worker takes and trains
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(name)s: %(message)s")
    try:
        worker_settings()
    except ValueError as err:  # refused at the start: a worker that took tasks would fail every run it took
        log.critical("%s", err)
        raise SystemExit(f"error: {err}") from err  # Celery's signal dispatch swallows an Exception, not this
    os.environ[START_TOKEN] = uuid.uuid4().hex


@signals.worker_shutting_down.connect
def _mark_shutdown(**_: Any) -> None:
    """In the worker's main process, at Ctrl-C or SIGTERM: tell its tasks, in the pool's child processes (which no
    signal reaches until their task ends), to checkpoint and queue their jobs again. Without it a warm shutdown
    waited for the whole job: hours at paper scale on a CPU."""
    try:
        _quick_store().set(shutdown_key(os.environ[START_TOKEN]), True)
    except Exception:  # Redis away: the task ends as before, or the supervisor requeues it once the worker is gone
        log.exception("could not tell running tasks to pause for the shutdown")


@signals.worker_shutdown.connect
def _clear_shutdown(**_: Any) -> None:
    try:
        _quick_store().delete(shutdown_key(os.environ[START_TOKEN]))
    except Exception:
        log.exception("could not clear this worker's shutdown mark")


class WorkerShuttingDown:
    """The embedded workers' shutdown request, for a task: set once the Celery worker running it shuts down. Read
    from the store at most once a second."""

    def __init__(self, lab: Lab, every: float = 1.0):
        self.lab, self.every = lab, every
        token = os.environ.get(START_TOKEN)  # absent when the task runs outside a worker (called directly)
        self.key = shutdown_key(token) if token else None
        self._checked, self._set = -math.inf, False

    def is_set(self) -> bool:
        clock = time.monotonic()
        if self.key and not self._set and clock - self._checked >= self.every:
            self._checked = clock
            self._set = bool(self.lab.store.get(self.key))
        return self._set


@app.task(name="lab.train_job")
def train_job(job_id: str) -> str:
    import torch

    from core.worker import Heartbeat, JobRunner

    lab = lab_for()
    me = WorkerId.here()
    job = lab.claim_job(job_id, me, is_dead=is_dead_here)
    if job is None:
        return f"job {job_id}: nothing to do (taken, finished or deleted)"
    log.info("training job %s (runs %s)", job_id, ", ".join(job["runs"]))
    try:
        # read after the claim: a bad LAB_THREADS then fails the runs with its message in the app (a task that
        # refused before claiming left them queued, with nothing said)
        threads, checkpoint_seconds = worker_settings()
        torch.set_num_threads(threads)
        with Heartbeat(lab, job_id, me) as beat:
            JobRunner(lab, job_id, job["runs"], WorkerShuttingDown(lab), checkpoint_seconds, worker=me,
                      beat=beat).run()
    except JobLost as lost:  # handed on, or its runs deleted, before it started training
        log.warning("%s: this worker lets it go", lost)
    except Exception as err:  # a failing run must not take the worker down
        log.exception("job %s failed", job_id)
        from core.store import now

        lab.release(job_id, "failed", worker=me, error=f"{type(err).__name__}: {err}", finished=now())
    return f"job {job_id}: finished"


class Supervisor:
    """Runs beside the app: queues again the jobs whose worker stopped sending heartbeats, and sends again the tasks
    of queued jobs that did not reach the broker."""

    def __init__(self, lab: Lab, every: float = 3.0):
        self.lab, self.every = lab, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-celery-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _loop(self) -> None:
        every_queued = True  # at the start: tasks sent as the app last stopped may never have reached the broker
        while not self._stop.wait(self.every):
            try:
                lost = self.lab.recover(is_alive=lambda w: not is_dead_here(w))
                if lost:
                    log.warning("requeued runs of lost workers: %s", ", ".join(lost))
                if sent := self.lab.resend(every_queued):
                    log.info("sent the tasks of queued jobs again: %s", ", ".join(sent))
                every_queued = False
            except Exception:  # Redis away for a moment: try again next round
                log.exception("recovery check failed")
                time.sleep(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
