"""run_app.py as a user runs it: serves, trains, and on Ctrl-C stops its workers leaving runs resumable."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from core.jobs import Lab
from core.redis_store import masked_url, unreachable_message
from core.store import DiskStore
from tests.helpers import wait_until
from tests.servers import free_port, http_json

ROOT = Path(__file__).resolve().parents[1]


def start_app(data: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run_app.py", "--port", str(port), "--data-dir", str(data)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def ctrl_c(app: subprocess.Popen) -> None:
    """What a terminal's Ctrl-C does: SIGINT to the whole foreground process group."""
    os.killpg(app.pid, signal.SIGINT)


def sigterm(app: subprocess.Popen) -> None:
    app.send_signal(signal.SIGTERM)


def sigterm_to_group(app: subprocess.Popen) -> None:
    """What a service manager's stop does (systemd's default, `kill -- -PGID`): SIGTERM to every process."""
    os.killpg(app.pid, signal.SIGTERM)


@pytest.mark.parametrize("stop", [ctrl_c, sigterm, sigterm_to_group])
def test_ctrl_c_stops_workers_and_the_run_resumes_on_restart(tmp_path, stop):
    data, port = tmp_path / "data", free_port()
    app = start_app(data, port)
    try:
        base = f"http://127.0.0.1:{port}/api/runs"
        wait_until(lambda: _up(base), timeout=30, message="the server")
        run_id = http_json(base, {"preset": "demo-tiny", "steps": 20000})["id"]
        wait_until(lambda: http_json(f"{base}/{run_id}")["step"] > 200, timeout=30, message="training")
        children = psutil.Process(app.pid).children(recursive=True)
        assert children, "the app should have started a worker process"
        stop(app)
        assert app.wait(timeout=30) == 0
        # multiprocessing's resource tracker leaves a moment after its parent; workers were joined
        wait_until(lambda: not [c for c in children if _alive(c)], timeout=10,
                   message=f"no orphan process (left: {[c.pid for c in children if _alive(c)]})")
    finally:
        if app.poll() is None:
            app.kill()
    lab = Lab(DiskStore(data))
    meta = lab.get(run_id)
    assert meta["status"] == "queued" and "shutdown" in meta["note"]
    assert lab.store.get(f"ckpt_step/{meta['job']}") == meta["step"]  # no half-written record
    stopped_at = meta["step"]
    again = start_app(data, port)
    try:
        wait_until(lambda: lab.get(run_id)["step"] > stopped_at + 100, timeout=60, message="the run to resume")
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=30)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _up(url: str) -> bool:
    try:
        http_json(url)
        return True
    except OSError:
        return False


def test_start_up_settings_that_cannot_work_are_refused_naming_the_flag(tmp_path, monkeypatch, capsys):
    import run_app

    def refused(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            run_app.parse_args(list(argv))
        assert exit_.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    (tmp_path / "file").write_text("")
    assert refused("--data-dir", str(tmp_path / "file")).endswith(f"--data-dir {tmp_path / 'file'}: not a folder")
    assert refused("--data-dir", "").endswith("--data-dir must name a folder, got ''")
    assert refused("--token", " ").endswith("--token must not be empty (leave it out for a lab without a token)")
    monkeypatch.setenv("LAB_BACKEND", "Celery")  # argparse checks choices given as flags only
    assert refused().endswith("LAB_BACKEND must be one of embedded, celery, got 'Celery'")
    monkeypatch.setenv("LAB_BACKEND", "")  # set but empty: unset, as LAB_DATA_DIR= must not mean this folder
    assert run_app.parse_args(["--data-dir", str(tmp_path / "runs")]).backend == "embedded"
    assert (tmp_path / "runs").is_dir()


def test_a_redis_password_is_never_printed(capsys):
    """The start-up line, the worker command it suggests and a refusal all show the URL with *** for the password."""
    import run_app

    with pytest.raises(SystemExit):  # nothing listens on port 1: refused, naming the URL
        run_app.parse_args(["--backend", "celery", "--redis-url", "redis://:S3CRET@127.0.0.1:1/0"])
    refusal = capsys.readouterr().err
    assert "redis://:***@127.0.0.1:1/0" in refusal and "S3CRET" not in refusal
    where = run_app.celery_where("redis://:S3CRET@10.0.0.5:6379/0")
    assert "LAB_REDIS_URL='redis://:***@10.0.0.5:6379/0'" in where and "S3CRET" not in where
    assert "put the password in for ***" in where
    assert masked_url("rediss://lab:S3CRET@h:6380/2") == "rediss://lab:***@h:6380/2"
    assert masked_url("redis://h:6379/0?password=S3CRET&db=1") == "redis://h:6379/0?password=***&db=1"
    plain = "redis://127.0.0.1:6379/0"  # nothing to hide: shown as given, with no note about a password
    assert masked_url(plain) == plain and "***" not in run_app.celery_where(plain)
    # nor on the page or in the API's 503 when Redis goes away (the reason may quote the URL too)
    gone = unreachable_message("redis://:S3CRET@h:1/0", ConnectionError("Error connecting to redis://:S3CRET@h:1/0."))
    assert "S3CRET" not in gone and "redis://:***@h:1/0" in gone


def test_a_data_dir_under_home_is_the_home_not_a_folder_named_tilde(tmp_path, monkeypatch):
    """`--data-dir=~/runs`, a quoted LAB_DATA_DIR="~/runs" and DiskStore("~/...") reach us with `~` unexpanded."""
    import importlib

    import run_app

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert run_app.parse_args(["--data-dir=~/runs"]).data_dir == home / "runs"
    store = DiskStore("~/.monosemanticity-lab")
    store.close()
    assert store.directory == home / ".monosemanticity-lab"
    monkeypatch.setenv("LAB_DATA_DIR", "~/from-env")
    try:
        assert importlib.reload(run_app).parse_args([]).data_dir == home / "from-env"
    finally:
        monkeypatch.delenv("LAB_DATA_DIR")
        importlib.reload(run_app)
    assert sorted(p.name for p in home.iterdir()) == [".monosemanticity-lab", "from-env", "runs"]
    assert list(work.iterdir()) == []  # no folder named "~" where the app was started


@pytest.mark.parametrize("url, says", [
    ("redis://127.0.0.1:6379/abc", "DB is a database number (0, 1, ...), got 'abc'"),
    ("redis://127.0.0.1:6379/0?foo=bar", "with only options redis-py knows"),
])
def test_a_redis_url_celery_could_not_use_is_refused_in_one_line(capsys, url, says):
    """It was accepted (runs then queued forever), or crashed with a traceback."""
    import run_app

    with pytest.raises(SystemExit) as exited:
        run_app.parse_args(["--backend", "celery", "--redis-url", url])
    assert exited.value.code == 2
    refusal = capsys.readouterr().err
    assert says in refusal and "--redis-url must be redis://HOST:PORT/DB" in refusal and "Traceback" not in refusal


def test_an_address_the_server_cannot_listen_on_is_refused_before_anything_starts(capsys):
    import run_app

    with pytest.raises(SystemExit) as exited:
        run_app.parse_args(["--host", "999.1.1.1"])
    assert exited.value.code == 2
    assert "--host must be an address or name of this machine" in capsys.readouterr().err
    assert run_app.host_problem("127.0.0.1") is None and run_app.host_problem("::1") is None
