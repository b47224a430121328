"""The run store on Redis, for workers on several machines: the same operations as core.store.DiskStore.

Values are encoded without pickle: JSON for plain data, with numpy arrays (np.save, allow_pickle=False)
and bytes embedded as tagged base64. A transaction holds a Redis lock (reentrant within a thread),
reads its own buffered writes, and applies them at the end in one MULTI/EXEC: a process killed
mid-transaction writes nothing.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import redis

PREFIX = "lab:"
_DELETED = object()
# Redis refuses a string over 512 MB (proto-max-bulk-len): a larger value (a large config's checkpoint, as base64) is
# kept in parts under keys of their own, which a short manifest at its key names
PART_BYTES = 128 * 2**20
_PARTS_TAG = b'{"__parts__":'
_MANIFEST_BYTES = 64  # a manifest is shorter: reading this much of a key tells whether it is one


def _part_keys(key: str, manifest: bytes) -> list[str]:
    info = json.loads(manifest)
    return [f"{PREFIX}{key}#{info['id']}/{i}" for i in range(info["__parts__"])]


def _encoded(key: str, value: Any) -> list[tuple[str, bytes]]:
    """The Redis keys and strings that hold `value` at `key`: one, or a manifest and its parts."""
    raw = encode(value)
    if len(raw) <= PART_BYTES:
        return [(PREFIX + key, raw)]
    manifest = json.dumps({"__parts__": -(-len(raw) // PART_BYTES), "id": uuid.uuid4().hex[:12]},
                          separators=(",", ":")).encode()
    parts = [raw[start:start + PART_BYTES] for start in range(0, len(raw), PART_BYTES)]
    return [(PREFIX + key, manifest), *zip(_part_keys(key, manifest), parts)]


def encode(value: Any) -> bytes:
    return json.dumps(_to_json(value), separators=(",", ":")).encode()


def decode(raw: bytes) -> Any:
    return _from_json(json.loads(raw))


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"__ndarray__": base64.b64encode(buffer.getvalue()).decode()}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {"__dict__": [[_to_json(k), _to_json(v)] for k, v in value.items()]} if any(
            not isinstance(k, str) for k in value) else {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.load(io.BytesIO(base64.b64decode(value["__ndarray__"])), allow_pickle=False)
        if "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        if "__dict__" in value:
            return {_from_json(k): _from_json(v) for k, v in value["__dict__"]}
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# Redis gone away (stopped, restarting, unreachable): the app answers 503 and says so on the page.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def masked_url(url: str) -> str:
    """The Redis URL with its password as *** (redis://:***@host:6379/0), to print, log or show: a terminal's
    scrollback, a service's log and the page are read by more people than may reach Redis."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # not a URL at all: its parts cannot be told apart, so none of it is shown
        return "(the --redis-url given)"
    user_info, at, host = netloc.rpartition("@")
    if at and ":" in user_info:
        url = url.replace(netloc, f"{user_info.partition(':')[0]}:***@{host}", 1)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)  # redis-py reads ?password= too


def unreachable_message(url: str, err: Exception) -> str:
    reason = str(err).rstrip(". ").replace(url, masked_url(url))
    url = masked_url(url)
    return (f"the run store (Redis at {url}) cannot be reached: {reason}. Runs are kept in Redis; once it is back "
            "the page and the workers go on")


def redis_problem(url: str) -> str | None:
    """Why the app cannot use Redis at `url` (a malformed URL, no server, a database it lacks), else None."""
    form = "--redis-url must be redis://HOST:PORT/DB, rediss://... or unix://PATH"
    try:
        parts = urlsplit(url)
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as err:
        return f"{form}, got {masked_url(url)!r} ({err})"
    database = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and database and not database.isdigit():
        client.close()  # redis-py would use database 0, and Celery refuse it: one answer, now
        return f"{form}: DB is a database number (0, 1, ...), got {database!r}"
    try:
        client.ping()
    except TypeError as err:  # an option redis-py does not know (?foo=bar), found only on connecting
        return f"{form}, with only options redis-py knows: {err}"
    except redis.exceptions.RedisError as err:
        return (f"--redis-url: cannot use Redis at {url}: {err} (start it first: README, 'Running on several "
                "machines')")
    finally:
        client.close()
    return None


class RedisStore:
    """Key-value operations the jobs layer needs, on a Redis database (`redis://host:port/db`)."""

    def __init__(self, url: str, timeout: float | None = None):
        self.url = url
        self.client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self._local = threading.local()

    def _buffer(self) -> dict[str, Any] | None:
        return getattr(self._local, "buffer", None)

    def get(self, key: str, default: Any = None) -> Any:
        buffer = self._buffer()
        if buffer is not None and key in buffer:
            value = buffer[key]
            return default if value is _DELETED else value
        for _ in range(5):
            raw = self.client.get(PREFIX + key)
            if raw is None or not raw.startswith(_PARTS_TAG):
                return default if raw is None else decode(raw)
            parts = self.client.mget(_part_keys(key, raw))
            if all(part is not None for part in parts):
                return decode(b"".join(parts))
            # rewritten between the manifest and its parts: read the new one
        raise redis.exceptions.ConnectionError(f"{key} kept changing while it was read")

    def set(self, key: str, value: Any) -> None:
        buffer = self._buffer()
        if buffer is not None:
            buffer[key] = value
        else:
            self._apply({key: value})

    def delete(self, key: str) -> None:
        buffer = self._buffer()
        if buffer is not None:
            buffer[key] = _DELETED
        else:
            self._apply({key: _DELETED})

    def _apply(self, writes: dict[str, Any], before_execute: Any = None) -> None:
        """Write and delete in one MULTI/EXEC, with the parts of values kept in parts, old and new."""
        heads = self.client.pipeline(transaction=False)
        for key in writes:
            heads.getrange(PREFIX + key, 0, _MANIFEST_BYTES - 1)
        pipe = self.client.pipeline(transaction=True)
        for (key, value), head in zip(writes.items(), heads.execute()):
            if head and head.startswith(_PARTS_TAG):  # the parts of the value it replaces
                pipe.delete(*_part_keys(key, head))
            if value is _DELETED:
                pipe.delete(PREFIX + key)
            else:
                for redis_key, raw in _encoded(key, value):
                    pipe.set(redis_key, raw)
        if before_execute is not None:
            before_execute()
        pipe.execute()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        lock = self.client.lock(PREFIX + "transaction-lock", timeout=60, blocking_timeout=60)
        if not lock.acquire():
            raise TimeoutError("could not lock the Redis store within 60 s")
        self._local.depth, self._local.buffer = 1, {}
        try:
            yield
            # the lock may have expired while the values were encoded (large checkpoints), and another process
            # written since: then nothing is written (LockNotOwnedError) rather than its writes overwritten
            self._apply(self._local.buffer, before_execute=lock.reacquire)
        finally:
            self._local.depth, self._local.buffer = 0, None
            lock.release()

    def clock(self) -> float:
        """Seconds by the Redis server's clock: workers on machines whose clocks disagree stamp their heartbeats, and
        the app judges them, by one clock."""
        seconds, microseconds = self.client.time()
        return seconds + microseconds / 1e6

    def volume_bytes(self) -> int:
        return int(self.client.info("memory").get("used_memory", 0))

    def close(self) -> None:
        self.client.close()
