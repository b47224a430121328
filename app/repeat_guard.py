"""A second click within a moment (a double click, an impatient click) repeats a request: it must not queue more runs.

Start, Duplicate and a sweep's Start ask for the same thing twice; the guard answers the repeat with what the first
queued. The window is short, so two people asking for the same config within it get one run between them: with the
same seed both would have trained the same numbers anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

REPEAT_WINDOW = 1.0  # seconds; an operating system's double-click interval is at most about half that


class RepeatGuard:
    """Runs each request once per key within `window` seconds; a repeat gets the first one's result."""

    def __init__(self, window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self._recent: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()  # held through the request: a repeat arriving meanwhile waits for its result

    def once(self, key: str, request: Callable[[], Any]) -> Any:
        """`request()`'s result, or for a repeat the earlier one's. A request that raises is not remembered, so
        asking again (after fixing what failed) runs it."""
        with self._lock:
            clock = self.clock()
            self._recent = {k: v for k, v in self._recent.items() if clock - v[1] < self.window}
            if key in self._recent:
                return self._recent[key][0]
            result = request()
            self._recent[key] = (result, self.clock())
            return result
