"""The diskcache store keeps what a failed transaction replaced (a full disk mid-checkpoint loses nothing)."""

import errno
from pathlib import Path

import pytest
from diskcache.core import UNKNOWN

from core.jobs import Lab
from core.store import DiskStore, TransactionalDisk, low_space_message

LARGE = 100_000  # bytes: over diskcache's 32 KB, a value kept in a file of its own


def value_files(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*.val")}


def fail_writes_of(monkeypatch: pytest.MonkeyPatch, failing: str, partial: bool = False) -> None:
    """Writing `failing` raises ENOSPC, as a full disk does (after writing part of its file, with `partial`)."""
    real = TransactionalDisk.store

    def full_disk(self, value, read, key=UNKNOWN):  # noqa: ANN001, ANN202
        if key == failing:
            if partial:
                _, full_path = self.filename(key, value)
                Path(full_path).parent.mkdir(parents=True, exist_ok=True)
                Path(full_path).write_bytes(b"half a value")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, value, read, key=key)

    monkeypatch.setattr(TransactionalDisk, "store", full_disk)


@pytest.mark.parametrize("partial", [False, True])
def test_a_write_that_fails_mid_transaction_keeps_the_values_it_replaced(tmp_path, monkeypatch, partial):
    store = DiskStore(tmp_path)
    old = b"a" * LARGE
    store.set("ckpt/job", old)
    store.set("ckpt_step/job", 32)
    files = value_files(tmp_path)
    fail_writes_of(monkeypatch, "ckpt_step/job", partial)
    with pytest.raises(OSError, match="No space left"):
        with store.transaction():  # as a worker writes its checkpoint
            store.set("ckpt/job", b"b" * LARGE)
            store.set("ckpt_step/job", 64)
    assert store.get("ckpt/job") == old and store.get("ckpt_step/job") == 32  # the last good checkpoint
    assert value_files(tmp_path) == files  # nothing left behind by the write that was undone


def test_a_committed_transaction_removes_the_files_of_what_it_replaced_and_deleted(tmp_path):
    store = DiskStore(tmp_path)
    store.set("a", b"a" * LARGE)
    store.set("b", b"b" * LARGE)
    with store.transaction():
        store.set("a", b"c" * LARGE)
        with store.transaction():  # nested: the outer one commits
            store.set("a", b"d" * LARGE)
            store.delete("b")
        assert store.get("a") == b"d" * LARGE
    assert store.get("a") == b"d" * LARGE and store.get("b") is None
    assert len(value_files(tmp_path)) == 1


def test_a_large_run_list_survives_a_submit_that_fails_on_a_full_disk(tmp_path, monkeypatch):
    """Once the index is over 32 KB (~2,200 runs), a failed submit emptied the run list for good."""
    from core.config import RunConfig

    lab = Lab(DiskStore(tmp_path))
    index = [f"{n:012x}" for n in range(3000)]
    lab.store.set("index", index)
    fail_writes_of(monkeypatch, "queue")
    with pytest.raises(OSError):
        lab.submit(RunConfig(steps=64, snapshot_every=16))
    assert lab.store.get("index") == index


def test_a_nearly_full_disk_is_said_before_runs_fail(tmp_path, monkeypatch):
    from types import SimpleNamespace

    store = DiskStore(tmp_path)
    assert low_space_message(store) is None  # room enough: nothing said
    monkeypatch.setattr("shutil.disk_usage", lambda path: SimpleNamespace(total=2**40, used=2**40, free=100 * 2**20))
    message = low_space_message(store)
    assert f"({tmp_path}) has under 512 MiB free" in message and "Retry" in message
