import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import RunConfig  # noqa: E402
from core.pool import WorkerPool  # noqa: E402


@pytest.fixture
def tiny() -> RunConfig:
    """A run small enough to train in well under a second."""
    return RunConfig(n_features=16, embed_dim=4, n_neurons=24, eps=1 / 8, batch_size=32, steps=64,
                     snapshot_every=16, lr=0.01, device="cpu")


@pytest.fixture
def pool(tmp_path):
    """One spawned worker (1 thread) on a fresh diskcache store, checkpointing often; stopped after the test."""
    started = WorkerPool(tmp_path / "data", workers=1, threads=1, checkpoint_seconds=0.3).start()
    yield started
    started.stop()
