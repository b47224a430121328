"""Start Monosemanticity Lab: the dashboard plus its embedded worker processes.

    python run_app.py [--host 127.0.0.1] [--port 8050] [--data-dir DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from core.config import env_setting

BACKENDS = ("embedded", "celery")


# expanded here too: a quoted "~/runs" in LAB_DATA_DIR (an env file, a service unit) reaches us unexpanded
DEFAULT_DATA_DIR = Path(env_setting("LAB_DATA_DIR") or Path.home() / ".monosemanticity-lab").expanduser()


def celery_where(redis_url: str) -> str:
    """Where runs are kept and how to start workers, for the start-up line: the password masked."""
    from core.redis_store import masked_url

    shown_url = masked_url(redis_url)
    password_note = " (put the password in for ***)" if shown_url != redis_url else ""
    return (f"Redis {shown_url}; start workers with: LAB_REDIS_URL='{shown_url}' "
            f".venv/bin/celery -A core.distributed worker --concurrency 1 -Q lab{password_note}")


def data_dir_problem(text: str) -> str | None:
    """Why the run store cannot live at `text`, found before the app starts (not as a traceback)."""
    if not text.strip():
        return "--data-dir must name a folder, got ''"
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        return f"--data-dir {path}: not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"--data-dir {path}: cannot create it as the run store's folder ({err.strerror or err})"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"--data-dir {path}: this user cannot write there"
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Monosemanticity Lab dashboard")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help=f"where runs are stored (default {DEFAULT_DATA_DIR}; env LAB_DATA_DIR)")
    parser.add_argument("--backend", choices=BACKENDS, default=env_setting("LAB_BACKEND", "embedded"),
                        help="embedded: diskcache + worker processes here (default); celery: Redis + Celery workers "
                             "(env LAB_BACKEND)")
    parser.add_argument("--redis-url", default=env_setting("LAB_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="with --backend celery: Redis for the queue and the run store (env LAB_REDIS_URL)")
    parser.add_argument("--workers", type=int, default=1,
                        help="embedded training processes (default 1; with celery, start workers with celery)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: leave one core to the web server)")
    parser.add_argument("--max-queued", type=int, default=64, help="runs allowed to wait in the queue")
    parser.add_argument("--token", default=env_setting("LAB_TOKEN"),
                        help="shared secret required to create, stop or delete runs (env LAB_TOKEN)")
    parser.add_argument("--access-log", action="store_true",
                        help="log every HTTP request (off by default: an open page makes several a second)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (dev tools, reloading off)")
    args = parser.parse_args(argv)
    if args.backend not in BACKENDS:  # argparse checks choices on the command line only, not a default from env
        parser.error(f"LAB_BACKEND must be one of {', '.join(BACKENDS)}, got {args.backend!r}")
    if args.token is not None and not args.token.strip():
        parser.error("--token must not be empty (leave it out for a lab without a token)")
    if args.workers < 0 or args.workers > 64:
        parser.error("--workers must be from 0 to 64")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        parser.error("--threads must be from 1 to 1024")
    if not 1 <= args.max_queued <= 100_000:
        parser.error("--max-queued must be from 1 to 100000")
    if not 1 <= args.port <= 65535:
        parser.error("--port must be from 1 to 65535")
    from core.config import memory_budget_problem

    budget_problem = memory_budget_problem()
    if budget_problem:
        parser.error(budget_problem)
    if args.backend == "embedded" and (problem := data_dir_problem(args.data_dir)):
        parser.error(problem)
    if problem := host_problem(args.host):
        parser.error(problem)
    args.data_dir = Path(args.data_dir).expanduser()  # "--data-dir=~/runs" is not expanded by the shell
    if args.backend == "celery":
        from core.redis_store import masked_url, redis_problem

        problem = redis_problem(args.redis_url)
        if problem:
            parser.error(problem.replace(args.redis_url, masked_url(args.redis_url)))
    return args


def host_problem(host: str) -> str | None:
    """Why the server could not listen on `host` (found before the workers start, not after), else None."""
    try:
        socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as err:
        return f"--host must be an address or name of this machine (127.0.0.1, 0.0.0.0, ...), got {host!r} ({err})"
    return None


def raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not (args.access_log or args.debug):  # keep the log to what matters: workers, jobs, errors
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from app import create_app
    from core.jobs import Lab
    from core.pool import WorkerPool
    from core.store import DiskStore

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        guard = "they need the token to change runs" if args.token else "anyone who can reach it can start and " \
            "delete runs (set --token)"
        print(f"WARNING: serving on {args.host}, not only this machine: {guard}.", file=sys.stderr)
    pool = supervisor = None
    if args.backend == "celery":
        os.environ["LAB_REDIS_URL"] = args.redis_url  # read by core.distributed when it creates its Celery app
        from core.distributed import Supervisor, lab_for

        lab = lab_for(args.redis_url, max_queued=args.max_queued)
        supervisor = Supervisor(lab).start()
        where = celery_where(args.redis_url)
    else:
        pool = WorkerPool(args.data_dir, workers=args.workers, threads=args.threads) if args.workers else None
        lab = Lab(DiskStore(args.data_dir), max_queued=args.max_queued, local_workers=True)
        if pool:
            pool.start()
        where = f"data: {args.data_dir}, {args.workers} worker(s)"
    # Ctrl-C and SIGTERM both end the server; workers then checkpoint their runs and exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, raise_keyboard_interrupt)
    print(f"Monosemanticity Lab on http://{args.host}:{args.port}  ({where})", flush=True)
    try:
        create_app(lab, token=args.token).run(host=args.host, port=args.port, debug=args.debug, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor:
            supervisor.stop()
        if pool:
            print("stopping workers (runs are checkpointed and resume on the next start)...", flush=True)
            pool.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
