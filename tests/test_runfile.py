import math

import pytest
import torch

from core.runfile import RunFileError, build_run_file, config_of, load_run_file, save_run_file
from core.train import Trainer

PAPER_TOP_KEYS = {"losses", "final_model", "log2_spaced_models", "setup", "k", "learning_rate", "initial_bias",
                  "nonlinearity", "task", "decay", "eps", "m", "N", "reg", "sample_kind", "log2_batch_size",
                  "log2_training_steps", "config", "metrics"}


def test_round_trip_with_weights_only_and_paper_keys(tiny, tmp_path):
    config = tiny.replace(task="random_proj")
    trainer = Trainer([config])
    trainer.advance(config.steps)
    path = save_run_file(build_run_file(trainer), tmp_path / "run.pt")
    record = torch.load(path, weights_only=True)
    assert PAPER_TOP_KEYS <= set(record)
    model = record["final_model"]
    assert model["0.weight"].shape == (config.n_neurons, config.embed_dim)
    assert model["0.bias"].shape == (config.n_neurons,)
    assert model["2.weight"].shape == (config.embed_dim, config.n_neurons)  # random_proj outputs m
    setup = record["setup"]
    assert setup["fixed_embedder"].shape == (config.embed_dim, config.n_features)
    assert setup["output_embedder"].shape == (config.embed_dim, config.n_features)
    assert {setup[k] for k in ("N", "m", "k")} == {config.n_features, config.embed_dim, config.n_neurons}
    assert record["log2_training_steps"] == math.log2(config.steps)
    assert len(record["losses"]) == config.steps // 16
    assert config_of(load_run_file(path)) == config
    # the run file's final model reproduces the reported final loss region's weights
    assert torch.equal(model["0.bias"], trainer.weights[0].b1.detach())


def test_truncated_and_foreign_files_reported(tmp_path, tiny):
    trainer = Trainer([tiny])
    trainer.advance(4)
    path = save_run_file(build_run_file(trainer), tmp_path / "run.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFileError, match="not a readable run file"):
        load_run_file(tmp_path / "cut.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(RunFileError, match="missing"):
        load_run_file(tmp_path / "other.pt")
