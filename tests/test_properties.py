"""Random configs, valid and not: each is either cleanly rejected, naming fields, or trains a few steps."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from core.config import FIELDS, config_from_dict
from core.jobs import Lab
from core.store import DiskStore
from core.train import Trainer

JUNK = st.sampled_from([None, "", "x", [], {}, True, math.nan, math.inf, -math.inf, -1, 0, 10**12, 1e300])
SIZES = {  # small enough to train in a moment when accepted, with edge and absurd values mixed in
    "n_features": st.sampled_from([2, 3, 16, 33, 0, -4, 4097, 10**9, 2.5, "16"]),
    "embed_dim": st.sampled_from([1, 2, 8, 15, 16, 0, 1025, 10**9]),
    "n_neurons": st.sampled_from([1, 5, 32, 0, 16385, 10**9]),
    "batch_size": st.sampled_from([1, 7, 32, 0, 65537, 10**9]),
    "steps": st.sampled_from([2, 3, 5, 1, 0, 10**12]),
    "snapshot_every": st.sampled_from([1, 2, 4, 0, 10**9]),
    "eps": st.sampled_from([1e-9, 1 / 64, 0.5, 1.0, 0.0, 1.5, -0.1]),
    "lr": st.sampled_from([1e-6, 0.01, 1.0, 0.0, 2.0]),
    "init_bias": st.sampled_from([-10.0, -1.0, 0.0, 10.0, -11.0, 1e9]),
    "bias_decay": st.sampled_from([0.0, 0.5, 100.0, 1000.0, -1.0]),
    "l1_reg": st.sampled_from([0.0, 0.01, 100.0, -0.5]),
    "seed": st.sampled_from([0, 7, 2**31 - 1, -1, 2**31]),
    "init_variant": st.sampled_from([0, 3, 2**31 - 1, -1, 2**31]),
    "task": st.sampled_from(["decoder", "random_proj", "abs", "nope", 3]),
    "nonlinearity": st.sampled_from(["relu", "gelu", "solu", "tanh"]),
    "sample_kind": st.sampled_from(["equal", "power_law", "zipf"]),
    "device": st.sampled_from(["cpu", "auto", "tpu"]),
    "precision": st.sampled_from(["fp32", "tf32", "bf16"]),
}
assert set(SIZES) == set(FIELDS)

configs = st.fixed_dictionaries({}, optional={name: st.one_of(strategy, JUNK) for name, strategy in SIZES.items()})
extra = st.dictionaries(st.sampled_from(["colour", "preset_name", "../x"]), JUNK, max_size=1)


def check(body: dict) -> None:
    config, errors = config_from_dict(body)
    if errors:
        assert config is None
        for name, message in errors.items():
            assert isinstance(message, str) and message
            assert name in FIELDS or name in body or name == "memory"
        return
    trainer = Trainer([config.replace(device="cpu")])
    trainer.advance(min(3, config.steps))  # NaN/inf losses are reported by snapshots, never raised
    trainer.snapshot()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, extra)
def test_validate_rejects_cleanly_or_trains(body, more):
    check({**body, **more})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    lab = Lab(DiskStore(tmp_path_factory.mktemp("data")), max_queued=10**6)
    return create_app(lab).server.test_client(), lab


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(configs, extra)
def test_api_answers_201_or_400_never_500(client, body, more):
    test_client, lab = client
    before = len(lab.list())
    payload = json.dumps({**body, **more})  # NaN and Infinity travel as JSON's non-standard tokens
    response = test_client.post("/api/runs", data=payload, content_type="application/json")
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert response.get_json()["errors"] and len(lab.list()) == before
    else:
        assert len(lab.list()) == before + 1
