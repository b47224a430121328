import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import RunConfig  # noqa: E402


@pytest.fixture
def tiny() -> RunConfig:
    """A run small enough to train in well under a second."""
    return RunConfig(n_features=16, embed_dim=4, n_neurons=24, eps=1 / 8, batch_size=32, steps=64,
                     snapshot_every=16, lr=0.01, device="cpu")
