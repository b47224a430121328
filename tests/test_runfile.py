import io
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
    # bf16 asked for on a CPU trains in fp32: the file says what computed it, beside the config as asked
    cpu_bf16 = Trainer([config.replace(precision="bf16", device="cpu")])
    cpu_bf16.advance(2)
    record = build_run_file(cpu_bf16)
    assert record["config"]["precision"] == "bf16" and record["trained_on"].endswith("fp32 (bf16 needs a CUDA GPU)")


def test_truncated_and_foreign_files_reported(tmp_path, tiny):
    trainer = Trainer([tiny])
    trainer.advance(4)
    path = save_run_file(build_run_file(trainer), tmp_path / "run.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFileError, match=r"cut.pt is not a run file: it is truncated or corrupt"):
        load_run_file(tmp_path / "cut.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(RunFileError, match="missing"):
        load_run_file(tmp_path / "other.pt")


class NotAWeight:
    """Stands for any Python object a foreign pickle might carry."""


@pytest.mark.parametrize("name, content, says", [
    ("summary.csv", b"lr,seed,final_loss\n0.01,0,0.27\n", "it is not a file that torch.save wrote"),
    ("empty.pt", b"", "it is empty or cut short"),
    ("object.pt", None, "it holds a Python object (tests.test_runfile.NotAWeight), which no run file has"),
])
def test_a_file_that_is_no_run_file_is_named_in_one_short_line(tmp_path, name, content, says):
    """Torch's own text is a page that advises weights_only=False (which runs a foreign file's code): not passed on."""
    path = tmp_path / name
    if content is None:
        torch.save({"model": NotAWeight}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(RunFileError) as err:
        load_run_file(path)
    assert str(err.value).startswith(f"{path} is not a run file: {says}")
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RunFileError, match=r"^not a readable run file: .*nope.pt: No such file or directory$"):
        load_run_file(tmp_path / "nope.pt")


def test_a_file_whose_weights_do_not_fit_its_config_is_refused_on_loading(tmp_path, tiny):
    """Hand-made or foreign files: refused with the reason, not a KeyError or a failure mid-training."""
    trainer = Trainer([tiny])
    trainer.advance(4)
    good = build_run_file(trainer)

    def refused(change) -> str:
        record = build_run_file(trainer)
        change(record)
        torch.save(record, tmp_path / "bad.pt")
        with pytest.raises(RunFileError) as err:
            load_run_file(tmp_path / "bad.pt")
        return str(err.value)

    assert "final_model has no 0.weight of shape (24, 4) (its config's sizes), got missing" in refused(
        lambda r: r["final_model"].pop("0.weight"))
    assert "log2_spaced_models[1] has no 2.weight of shape (16, 24) (its config's sizes), got (16, 12)" in refused(
        lambda r: r["log2_spaced_models"][1].update({"2.weight": torch.zeros(16, 12)}))
    assert "final_model: 0.bias is not finite" in refused(lambda r: r["final_model"]["0.bias"].fill_(math.nan))
    assert "its config lacks its sizes" in refused(lambda r: r["config"].pop("n_neurons"))
    # what a continuation reads after it trained (the CLI's summary and provenance): checked before it trains
    assert "its metrics are list, not a table" in refused(lambda r: r.update(metrics=[1]))
    assert "its started_from is str, not a table" in refused(lambda r: r.update(started_from="elsewhere"))
    assert "its started_from offset is 'x'" in refused(lambda r: r.update(started_from={"offset": "x"}))
    assert "its steps_trained is 2.5" in refused(lambda r: r["metrics"].update(steps_trained=2.5))
    torch.save(good, tmp_path / "good.pt")
    assert config_of(load_run_file(tmp_path / "good.pt")) == tiny


def refusal(record: dict, path) -> str:
    """Why load_run_file refuses `record` saved at `path` (it must)."""
    torch.save(record, path)
    with pytest.raises(RunFileError) as err:
        load_run_file(path)
    return str(err.value)


def test_weights_that_are_not_dense_real_float32_able_are_refused_on_loading(tmp_path, tiny):
    """A sparse tensor crashed the finiteness check with a traceback; int, bool and complex tensors were cast
    (complex losing its imaginary part); float64's 1e300 passed and became inf in float32, a divergence at step 0."""
    config = tiny.replace(task="random_proj")
    trainer = Trainer([config])
    trainer.advance(4)
    path = tmp_path / "bad.pt"

    def refused(pick, name: str, make) -> str:
        """The refusal of this trainer's record with tensor `name` of the table `pick` chooses replaced by make(it)."""
        record = build_run_file(trainer)
        table = pick(record)
        table[name] = make(table[name])
        return refusal(record, path)

    final, log2, setup = (lambda r: r["final_model"]), (lambda r: r["log2_spaced_models"][1]), (lambda r: r["setup"])

    def huge(tensor: torch.Tensor) -> torch.Tensor:  # finite in float64 only
        return torch.full_like(tensor, 1e300, dtype=torch.float64)

    assert "run file's final_model: 0.weight is sparse_coo, not a dense tensor" in refused(
        final, "0.weight", lambda t: t.to_sparse())
    assert "run file's final_model: 0.bias is not finite (NaN or inf) in float32" in refused(final, "0.bias", huge)
    assert "run file's final_model: 2.weight is int64, not floating point (float16, bfloat16" in refused(
        final, "2.weight", lambda t: t.to(torch.int64))
    assert "run file's log2_spaced_models[1]: 0.bias is bool, not floating point" in refused(
        log2, "0.bias", lambda t: t > 0)
    assert "run file's final_model: 0.weight is complex64, not floating point" in refused(
        final, "0.weight", lambda t: t.to(torch.complex64))
    assert "run file's setup: fixed_embedder is sparse_coo, not a dense tensor" in refused(
        setup, "fixed_embedder", lambda t: t.to_sparse())
    assert "run file's setup: output_embedder is not finite (NaN or inf) in float32" in refused(
        setup, "output_embedder", huge)
    assert "run file's setup: output_embedder is int32, not floating point" in refused(
        setup, "output_embedder", lambda t: t.to(torch.int32))
    # without its own output embedder, a continued random_proj run would draw another (core.continuation.world_of)
    record = build_run_file(trainer)
    record["setup"].pop("output_embedder")
    assert "run file's setup has no output_embedder of shape (4, 16) (its config's sizes), got missing" in refusal(
        record, path)
    # what this code writes loads, and any real floating dtype within float32's range does too
    record = build_run_file(trainer)
    record["final_model"] = {k: v.to(torch.float64) for k, v in record["final_model"].items()}
    record["setup"]["output_embedder"] = record["setup"]["output_embedder"].to(torch.bfloat16)
    torch.save(record, path)
    assert config_of(load_run_file(path)) == config
    decoder = Trainer([tiny])
    decoder.advance(4)
    assert "output_embedder" not in build_run_file(decoder)["setup"]  # only random_proj has one
    assert config_of(load_run_file(save_run_file(build_run_file(decoder), path))) == tiny


def test_a_diverged_runs_file_keeps_it_up_to_its_last_good_weights(tiny):
    trainer = Trainer([tiny, tiny.replace(seed=1)])
    trainer.advance(40)
    trainer.snapshot()
    trainer.advance(10)
    with torch.no_grad():
        trainer.weights[0].w1[0, 0] = float("nan")  # some step after 40 went wrong
    error = trainer.snapshot().runs[0].error
    record = build_run_file(trainer, 0)
    # weights saved after steps 1, 2, ..., 32, all finite; those after step 50 are not
    assert len(record["log2_spaced_models"]) == 6 and record["metrics"]["steps_trained"] == 32
    assert record["final_model"] is record["log2_spaced_models"][-1]
    assert record["metrics"]["error"] == error and record["metrics"]["diverged_at"] == 51  # the step after 50
    assert len(record["loss_history"]) == 32 and math.isfinite(record["metrics"]["final_loss"])
    assert record["metrics"]["mean_bias"] == pytest.approx(float(record["final_model"]["0.bias"].mean()))
    buffer = io.BytesIO()
    torch.save(record, buffer)
    buffer.seek(0)
    load_run_file(buffer)  # finite: it can be inspected and continued
    healthy = build_run_file(trainer, 1)  # the other run of the job trained on
    assert healthy["metrics"]["steps_trained"] == 50 and "error" not in healthy["metrics"]
    assert torch.equal(healthy["final_model"]["0.weight"], trainer.weights[1].w1)


def test_a_run_diverged_before_its_first_saved_weights_has_no_file(tiny):
    trainer = Trainer([tiny])
    trainer.advance(1)
    with torch.no_grad():
        trainer.weights[0].b1.fill_(float("inf"))
    assert trainer.snapshot().runs[0].error and build_run_file(trainer, 0) is None


def test_a_checkpoint_from_before_divergence_steps_were_kept_still_keeps_only_finite_weights(tiny):
    from tests.helpers import diverging_config

    trainer = Trainer([diverging_config()])
    trainer.advance(300)
    trainer.snapshot()
    state = trainer.state_dict()
    del state["diverged_at"]  # as a checkpoint written before it
    restored = Trainer([diverging_config()])
    restored.load_state_dict(state)
    assert restored.diverged_at == trainer.diverged_at
    record = build_run_file(restored, 0)
    assert record["metrics"] == build_run_file(trainer, 0)["metrics"]  # up to the last finite copy, as before
    assert torch.isfinite(record["final_model"]["0.weight"]).all()
