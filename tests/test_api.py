"""The JSON API, through Flask's test client (no worker: submitted runs stay queued)."""

import io
import json

import pytest

from app import create_app
from core.jobs import Lab, WorkerId
from core.store import DiskStore

GOOD = {"n_features": 16, "embed_dim": 4, "n_neurons": 24, "steps": 64, "snapshot_every": 16, "device": "cpu"}


@pytest.fixture
def lab(tmp_path):
    return Lab(DiskStore(tmp_path / "data"), max_queued=3)


@pytest.fixture
def client(lab):
    return create_app(lab).server.test_client()


def test_submit_get_list_stop_delete(client, lab):
    response = client.post("/api/runs", json=GOOD)
    assert response.status_code == 201
    run_id = response.get_json()["id"]
    run = client.get(f"/api/runs/{run_id}").get_json()
    assert run["status"] == "queued" and run["steps"] == 64 and run["config"]["n_neurons"] == 24
    assert {"step", "loss", "mono_ratio", "mean_bias", "error"} <= set(run)
    assert [r["id"] for r in client.get("/api/runs").get_json()] == [run_id]
    assert client.post(f"/api/runs/{run_id}/stop").get_json()["status"] == "stopped"
    assert client.get(f"/api/runs/{run_id}/file").status_code == 409  # never trained: no file
    assert client.delete(f"/api/runs/{run_id}").status_code == 200
    assert client.get(f"/api/runs/{run_id}").status_code == 404


def test_preset_submission(client, lab):
    response = client.post("/api/runs", json={"preset": "quick-negative-bias", "seed": 3})
    assert response.status_code == 201
    config = lab.config(response.get_json()["id"])
    assert config.init_bias == -1.0 and config.seed == 3


def test_bad_bodies_name_each_field(client, lab):
    response = client.post("/api/runs", json={"eps": 2, "n_neurons": 10**9, "task": "sideways", "colour": 1})
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert set(errors) == {"eps", "n_neurons", "task", "colour"}
    assert "(0, 1]" in errors["eps"] and "16384" in errors["n_neurons"]
    # every error body has "error", as the 404s, 409s and 503s do: one key for a client to show
    summary = response.get_json()["error"]
    assert all(message in summary for message in errors.values()) and len(summary) < 2 * len("; ".join(errors.values()))
    assert client.post("/api/runs", json={"preset": "nope"}).status_code == 400
    malformed = client.post("/api/runs", data="{not json", content_type="application/json")
    assert malformed.status_code == 400 and "malformed JSON" in malformed.get_json()["errors"]["body"]
    assert malformed.get_json()["error"].startswith("malformed JSON")
    assert client.post("/api/runs", json=[1, 2]).status_code == 400
    assert client.post("/api/runs", data="x" * 100_000, content_type="application/json").status_code == 413
    assert lab.list() == []  # nothing was created


def test_hostile_bodies_and_queries_get_4xx_not_500(client, lab):
    def submit(text: str) -> int:
        return client.post("/api/runs", data=text, content_type="application/json").status_code

    assert submit('{"steps": ' + "[" * 30_000) == 400  # nested past Python's recursion limit, under 64 KiB
    assert submit('{"lr": 1' + "0" * 400 + "}") == 400  # an integer too large for a float
    assert submit('{"steps": ' + "[" * 981 + "]" * 981 + "}") == 400  # nested just under the parser's limit

    def errors(text: str, path: str = "/api/runs") -> dict:
        return client.post(path, data=text, content_type="application/json").get_json()["errors"]

    # numbers Python cannot hold are the field's to name, not a malformed body
    assert errors('{"steps": ' + "1" * 5000 + "}")["steps"].startswith("steps must be an integer from 2 to 1048576, "
                                                                       "got 1111")
    assert errors('{"lr": 1e400}') == {"lr": "lr must be a number in (0, 1], got 1e400"}
    assert errors('{"preset": "LR3", "values": [1e400, 0.01]}', "/api/sweeps") == {
        "values": "lr must be a number in (0, 1], got 1e400"}
    chunked = client.post("/api/runs", input_stream=io.BytesIO(b'{"label": "' + b"x" * 70_000 + b'"}'),
                          headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert chunked.status_code == 413  # no Content-Length to refuse it by
    wrong_method = client.put("/api/runs")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "GET, POST"
    assert client.get("/api/runs/0123456789ab/stop").status_code == 405
    assert client.get("/api/nothing-here").status_code == 404
    run_id = client.post("/api/runs", json=GOOD).get_json()["id"]
    for since in ("%C2%B2", "9" * 5000, "-1", "1.5"):  # a superscript two passes str.isdigit
        response = client.get(f"/api/runs/{run_id}/history?since={since}")
        assert response.status_code == 400 and "since must be an integer" in response.get_json()["error"]
    assert [r["id"] for r in lab.list()] == [run_id]


def test_unknown_and_path_like_ids(client):
    for run_id in ("0123456789ab", "..%2Fx", "../x"):
        assert client.get(f"/api/runs/{run_id}").status_code == 404
        assert client.post(f"/api/runs/{run_id}/stop").status_code == 404
        assert client.get(f"/api/runs/{run_id}/file").status_code == 404


def test_queue_full_is_503(client):
    for _ in range(3):
        assert client.post("/api/runs", json=GOOD).status_code == 201
    response = client.post("/api/runs", json=GOOD)
    assert response.status_code == 503 and "queue is full" in response.get_json()["error"]


def test_openapi_describes_every_field(client):
    spec = client.get("/api/openapi.json").get_json()
    properties = spec["components"]["schemas"]["RunConfig"]["properties"]
    assert properties["task"]["enum"] == ["decoder", "random_proj", "abs"]
    assert properties["n_neurons"]["maximum"] == 16384
    assert properties["lr"]["minimum"] == 0 and properties["lr"]["exclusiveMinimum"] is True  # OpenAPI 3.0's form
    assert spec["openapi"].startswith("3.0.")
    assert "/api/runs/{id}/file" in spec["paths"]


def test_token_guards_changes_not_reads(lab):
    client = create_app(lab, token="s3cret").server.test_client()
    refused = client.post("/api/runs", json=GOOD)
    assert refused.status_code == 401 and "token" in refused.get_json()["error"] and lab.list() == []
    created = client.post("/api/runs", json=GOOD, headers={"X-Lab-Token": "s3cret"})
    assert created.status_code == 201
    run_id = created.get_json()["id"]
    assert client.get(f"/api/runs/{run_id}").status_code == 200  # reading needs no token
    assert client.delete(f"/api/runs/{run_id}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # The page's own "Start run" callback is guarded too; opening /?token=... once sets the cookie.
    start = {"output": "x", "outputs": [], "inputs": [], "changedPropIds": ["start-button.n_clicks"]}
    assert client.post("/_dash-update-component", json=start).status_code == 401
    opened = client.get("/?preset=demo-tiny&token=s3cret&steps=100")
    # the token goes into the cookie and out of the address bar (a projector shows it); the config stays
    assert opened.status_code == 302 and opened.headers["Location"] == "/?preset=demo-tiny&steps=100"
    assert client.post("/_dash-update-component", json=start).status_code != 401
    assert client.get("/?token=wrong").status_code == 200  # no cookie for it: a change then says it needs the token
    for wrong in ({"X-Lab-Token": "café"}, {"Authorization": "Bearer é"}):  # not ASCII: refused, not an error
        assert client.post("/api/runs", json=GOOD, headers=wrong).status_code == 401
    app = create_app(lab, token="s3cret")
    no_cookie = app.server.test_client()
    for hostile in ([1], {"changedPropIds": 5}, {"changedPropIds": [None]}):  # not what Dash sends: a change
        assert no_cookie.post("/_dash-update-component", json=hostile).status_code == 401
    # Dash runs the callback the body's output names, whatever changedPropIds claim: the check follows the output
    output = next(o for o, cb in app.callback_map.items() if cb["inputs"] == [{"id": "start-button",
                                                                                "property": "n_clicks"}])
    sneaky = {"output": output, "outputs": [], "inputs": [{"id": "start-button", "property": "n_clicks", "value": 1}],
              "changedPropIds": []}
    assert no_cookie.post("/_dash-update-component", json=sneaky).status_code == 401
    assert no_cookie.post("/_dash-update-component", json=sneaky,
                          headers={"Origin": "http://evil.example"}).status_code == 403
    assert lab.list() == [lab.get(run_id)]  # nothing queued


def test_a_token_with_any_characters_works(lab):
    client = create_app(lab, token="clé-✓").server.test_client()
    as_a_server_reads_it = "clé-✓".encode().decode("latin-1")  # WSGI decodes a header's UTF-8 bytes as latin-1
    assert client.post("/api/runs", json=GOOD, headers={"X-Lab-Token": "wrong"}).status_code == 401
    assert client.post("/api/runs", json=GOOD, headers={"X-Lab-Token": "clé-✓"[:3]}).status_code == 401
    assert client.post("/api/runs", json=GOOD,
                       headers={"Authorization": f"Bearer {as_a_server_reads_it}"}).status_code == 201
    client.get("/?token=cl%C3%A9-%E2%9C%93")  # the page opened once with the token: its cookie carries it on
    start = {"output": "x", "outputs": [], "inputs": [], "changedPropIds": ["start-button.n_clicks"]}
    assert client.post("/_dash-update-component", json=start).status_code != 401


def test_history_endpoint_pages_with_since(client, lab, tmp_path):
    import numpy as np

    run_id = client.post("/api/runs", json=GOOD).get_json()["id"]
    for n, end in enumerate((16, 32)):
        lab.store.set(f"chunk/{run_id}/{n}", {"start": end - 16, "end": end, "losses": np.ones(16, np.float32),
                                              "point": {"step": end, "loss": 1.0}})
    meta = lab.get(run_id)
    meta["chunks"] = 2
    lab.store.set(f"meta/{run_id}", meta)
    first = client.get(f"/api/runs/{run_id}/history").get_json()
    assert first["next"] == 2 and first["steps"] == list(range(1, 33)) and first["points"]["step"] == [16, 32]
    later = client.get(f"/api/runs/{run_id}/history?since=2").get_json()
    assert later["steps"] == [] and later["points"]["step"] == []  # nothing new: empty lists, not a KeyError
    assert client.get(f"/api/runs/{run_id}/history?since=-1").status_code == 400


def test_other_sites_pages_cannot_change_runs(client, lab):
    # A page on another site can POST text/plain (or with no body) without a CORS preflight.
    plain = client.post("/api/runs", data='{"preset": "demo-tiny"}', content_type="text/plain")
    assert plain.status_code == 415 and "application/json" in plain.get_json()["error"]
    evil = {"Origin": "http://evil.example"}
    refused = client.post("/api/runs", json=GOOD, headers=evil)
    assert refused.status_code == 403 and "another site" in refused.get_json()["error"] and lab.list() == []
    run_id = client.post("/api/runs", json=GOOD, headers={"Origin": "http://localhost"}).get_json()["id"]
    assert client.post(f"/api/runs/{run_id}/stop", headers=evil).status_code == 403
    assert client.delete(f"/api/runs/{run_id}", headers={"Origin": "null"}).status_code == 403
    assert lab.get(run_id)["status"] == "queued"
    assert client.get(f"/api/runs/{run_id}", headers=evil).status_code == 200  # reading is not a change
    start = {"output": "x", "outputs": [], "inputs": [], "changedPropIds": ["start-button.n_clicks"]}
    assert client.post("/_dash-update-component", json=start, headers=evil).status_code == 403
    assert client.post("/api/runs", json=GOOD, headers={"Origin": "http://["}).status_code == 403  # not a URL


def test_the_page_s_callbacks_take_a_value_per_run_of_a_large_lab(lab):
    """The run list's buttons send ~350 bytes per run: a lab of 300 runs must not hit the API's 64 KiB limit."""
    app = create_app(lab)
    client = app.server.test_client()
    output = next(o for o, cb in app.callback_map.items() if "run-action" in json.dumps(cb["inputs"]))
    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1].split("@")[0]}
               for part in output.strip(".").split("...")]
    buttons = [{"id": {"type": "run-action", "action": action, "run": f"{n:012x}"}, "property": "n_clicks",
                "value": None} for n in range(300) for action in ("continue", "duplicate", "delete")]
    body = {"output": output, "outputs": outputs, "inputs": [buttons], "state": [], "changedPropIds": []}
    assert len(json.dumps(body)) > 100_000
    answered = client.post("/_dash-update-component", json=body)
    assert answered.status_code == 200 and answered.get_json()["multi"]  # the run list's callback ran
    refused = client.post("/api/runs", json={**GOOD, "label": "x" * 70_000})
    assert refused.status_code == 413 and refused.get_json()["error"] == "request body must be under 65536 bytes"


def test_controls_that_would_do_nothing_say_why(client, lab):
    run_id = client.post("/api/runs", json=GOOD).get_json()["id"]
    response = client.post(f"/api/runs/{run_id}/resume")
    assert response.status_code == 409
    assert response.get_json()["error"] == (f"cannot resume run {run_id}: it is queued (resume acts on paused or "
                                            f"interrupted runs)")
    assert client.post(f"/api/runs/{run_id}/pause").get_json()["status"] == "paused"
    assert client.post(f"/api/runs/{run_id}/stop").get_json()["status"] == "stopped"
    for action in ("stop", "pause", "resume"):
        response = client.post(f"/api/runs/{run_id}/{action}")
        assert response.status_code == 409 and response.get_json()["status"] == "stopped"
    assert lab.get(run_id)["status"] == "stopped"
    # a run that failed with its job (an error in the worker) is retried by resume; one that diverged is not
    failed = client.post("/api/runs", json=GOOD).get_json()["id"]
    job_id, _ = lab.claim(WorkerId("machine-a", 11))
    lab.release(job_id, "failed", worker=WorkerId("machine-a", 11), error="RuntimeError: CUDA out of memory")
    assert client.get(f"/api/runs/{failed}").get_json()["retryable"] is True
    assert client.post(f"/api/runs/{failed}/resume").get_json()["status"] == "queued"
    lab.store.set(f"meta/{failed}", {**lab.get(failed), "status": "failed", "error": "diverged at step 9",
                                     "diverged": True, "has_file": True, "weights_step": 8})
    summary = client.get(f"/api/runs/{failed}").get_json()
    assert summary["retryable"] is False and summary["continuable"] is True and summary["weights_step"] == 8
    response = client.post(f"/api/runs/{failed}/resume")
    assert response.status_code == 409 and response.get_json()["error"] == (
        f"cannot resume run {failed}: it failed on its own (diverged at step 9), not with its job: a retry would "
        "fail the same way")
    stopping = client.post("/api/runs", json=GOOD).get_json()["id"]
    lab.store.set(f"meta/{stopping}", {**lab.get(stopping), "note": "stopping: a worker saves it from step 8, its "
                                                                    "last checkpoint, once one is free"})
    again = client.post(f"/api/runs/{stopping}/stop")
    assert again.status_code == 409 and again.get_json()["error"] == (
        f"run {stopping} is already stopping: a worker saves it from step 8, its last checkpoint, once one is free")


def test_long_input_is_quoted_short_and_errors_are_json(client):
    for body in ({"preset": "p" * 60_000}, {"x" * 60_000: 1}):
        response = client.post("/api/runs", json=body)
        assert response.status_code == 400 and len(response.data) < 2000
    response = client.get("/api/runs/" + "a" * 5000)
    assert response.status_code == 404 and len(response.data) < 500
    # A body shorter than its Content-Length: werkzeug's HTML 400 page before
    short = client.post("/api/runs", input_stream=io.BytesIO(b'{"steps": 6'),
                        headers={"Content-Type": "application/json", "Content-Length": "100"})
    assert short.status_code == 400 and short.is_json


def test_cuda_refused_where_the_workers_have_none(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    client = create_app(Lab(DiskStore(tmp_path / "data"), local_workers=True)).server.test_client()
    response = client.post("/api/runs", json={**GOOD, "device": "cuda"})
    assert response.status_code == 400
    assert response.get_json()["errors"]["device"] == ("device must be auto or cpu on this machine (it has no CUDA "
                                                       "GPU), got 'cuda'")
    assert client.post("/api/runs", json=GOOD).status_code == 201


def test_numbers_must_be_json_numbers_and_edited_presets_say_so(client, lab):
    response = client.post("/api/runs", json={"preset": "demo-tiny", "steps": "100", "seed": 2})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "steps": "steps must be an integer from 2 to 1048576, as a JSON number, got '100'"}
    assert client.post("/api/runs", json={"preset": None}).get_json()["errors"]["preset"].startswith(
        "unknown preset null")  # not the default config, labelled "api"
    tiny = client.post("/api/runs", data='{"lr": 1e-400}', content_type="application/json").get_json()["errors"]
    assert tiny == {"lr": "lr must be a number in (0, 1], got 1e-400, too small for a float (write 0 for zero)"}
    plain = client.post("/api/runs", json={"preset": "demo-tiny"}).get_json()["id"]
    edited = client.post("/api/runs", json={"preset": "demo-tiny", "seed": 4}).get_json()["id"]
    assert lab.get(plain)["label"] == "demo-tiny" and lab.get(edited)["label"] == "demo-tiny (edited)"
    for path in ("/api", "/api/"):
        response = client.get(path)
        assert response.status_code == 404 and response.is_json


def test_runs_stored_before_a_config_field_existed_read_with_its_default(client, lab):
    from app.compare_page import results_table
    from core.compare import differing_fields

    old, new = (client.post("/api/runs", json={**GOOD, "seed": s}).get_json()["id"] for s in (1, 2))
    meta = lab.store.get(f"meta/{old}")
    del meta["config"]["init_variant"]  # as stored before the field existed
    lab.store.set(f"meta/{old}", meta)
    assert client.get(f"/api/runs/{old}").get_json()["config"]["init_variant"] == 0
    metas = [lab.get(old), lab.get(new)]
    assert differing_fields([m["config"] for m in metas]) == ["seed"]  # a KeyError broke the compare page
    assert "seed" in str(results_table(lab, metas, ["a", "b"]))


def test_the_page_s_delete_confirmation_needs_the_token(lab):
    client = create_app(lab, token="s3cret").server.test_client()
    run_id = client.post("/api/runs", json=GOOD, headers={"X-Lab-Token": "s3cret"}).get_json()["id"]
    confirm = {"output": "x", "outputs": [], "inputs": [], "changedPropIds": ["delete-confirm.submit_n_clicks"],
               "state": [{"id": "delete-pending", "property": "data", "value": run_id}]}
    assert client.post("/_dash-update-component", json=confirm).status_code == 401
    assert lab.exists(run_id)


def test_queue_a_sweep_and_list_it(client, lab):
    response = client.post("/api/sweeps", json={"preset": "LR3", "values": [0.003, 0.01]})
    assert response.status_code == 201
    made = response.get_json()
    assert made["field"] == "lr" and len(made["runs"]) == 2 and made["jobs"] == 1
    config = lab.config(made["runs"][1])
    assert config.lr == 0.01 and config.n_neurons == 256 and config.init_bias == -1.0  # LR3's quick twin
    listed = client.get("/api/sweeps").get_json()
    assert [s["id"] for s in listed] == [made["sweep"]] and listed[0]["name"] == "LR3"
    assert [r["value"] for r in listed[0]["runs"]] == [0.003, 0.01]
    for run_id in made["runs"]:  # the queue takes 3 runs here
        client.delete(f"/api/runs/{run_id}")
    any_preset = client.post("/api/sweeps", json={"preset": "demo-tiny", "field": "init_bias", "values": [0, -1]})
    assert any_preset.status_code == 201 and lab.config(any_preset.get_json()["runs"][1]).init_bias == -1.0
    for run_id in any_preset.get_json()["runs"]:
        client.delete(f"/api/runs/{run_id}")
    # LR3's learning rates from zero bias: its sweep is named for what was set, to tell apart from LR3's own
    from_zero = client.post("/api/sweeps", json={"preset": "LR3", "values": [0.01], "set": {"init_bias": 0,
                                                                                         "bias_decay": 0}})
    assert from_zero.status_code == 201
    config = lab.config(from_zero.get_json()["runs"][0])
    assert (config.lr, config.init_bias, config.bias_decay) == (0.01, 0.0, 0.0)
    assert client.get("/api/sweeps").get_json()[-1]["name"] == "LR3 with init_bias=0, bias_decay=0"


@pytest.mark.parametrize("body, key, says", [
    ({"preset": "LR3", "values": [0.01, 5]}, "values", "lr=5: lr must be a number in (0, 1]"),
    ({"preset": "LR9"}, "preset", "paper batch (LR1, LR2"),
    ({"preset": "quick-zero-bias"}, "field", "name the field to sweep"),
    ({"preset": "LR3", "field": "task", "values": [1]}, "field", "field must be one of"),
    ({"preset": "LR3", "values": ["0.01"]}, "values", "JSON numbers"),
    ({"preset": "LR3", "values": [True]}, "values", "JSON numbers"),
    ({"preset": "LR3", "seeds": 0}, "seeds", "from 1 to 16, got 0"),
    ({"preset": "LR3", "scale": "huge"}, "scale", "quick, paper"),
    ({"preset": "LR3", "shared_seed": "yes"}, "shared_seed", "true or false"),
    ({"preset": "LR3", "lr": 0.1}, "lr", "unknown key 'lr'"),
    ({"preset": "K1", "values": [256.5]}, "values", "n_neurons must be an integer from 1 to 16384, got 256.5"),
    ({"preset": "K1", "values": [10**400]}, "values", "at n_neurons=1000000000000000... (401 characters)"),
    ({"preset": "demo-tiny", "field": "bias_decay", "values": [-0.0, 0.0]}, "values", "0 is given more than once"),
    ({"preset": "demo-tiny", "field": "lr", "values": [0.01], "scale": "paper"}, "scale", "its own sizes"),
    ({"preset": "LR3", "set": [1]}, "set", 'set must be an object of config fields, as {"init_bias": 0}'),
    ({"preset": "LR3", "set": {"init_bias": -20}}, "set", "init_bias must be a number in [-10, 10], got -20"),
    ({"preset": "LR3", "set": {"lr": 0.1}}, "set", "lr is the swept field"),
    ({"preset": "LR3", "set": {"init_bias": "0"}}, "set", "init_bias must be a number in [-10, 10], as a JSON number"),
    ({"preset": "LR3", "set": {"steps": "5", "bogus": 1}}, "set", "as a JSON number, got '5'; unknown field 'bogus'"),
])
def test_a_bad_sweep_names_what_to_fix_and_queues_nothing(client, lab, body, key, says):
    response = client.post("/api/sweeps", json=body)
    assert response.status_code == 400
    assert says in response.get_json()["errors"][key]
    assert lab.list() == []


def test_a_sweep_over_the_queue_limit_is_refused_whole(client, lab):
    response = client.post("/api/sweeps", json={"preset": "LR3"})  # 6 runs; the queue takes 3: never, a 400
    assert response.status_code == 400
    assert response.get_json()["errors"]["seeds"] == ("6 runs asked for at once, and this lab's queue takes at most 3 "
                                                      "(run_app.py --max-queued): fewer values or seeds")
    assert lab.list() == []
    client.post("/api/runs", json=GOOD)
    busy = client.post("/api/sweeps", json={"preset": "LR3", "values": [0.01, 0.02, 0.03]})  # fits, once one ends
    assert busy.status_code == 503 and "the queue is full" in busy.get_json()["error"]
    assert len(lab.list()) == 1
    assert client.post("/api/sweeps", data="{}", content_type="text/plain").status_code == 415


def test_continue_a_finished_run_with_settings_changed(client, lab):
    import threading

    from core.worker import JobRunner

    parent = client.post("/api/runs", json={**GOOD, "steps": 32}).get_json()["id"]
    assert client.post(f"/api/runs/{parent}/continue", json={}).status_code == 409  # queued: no final weights
    job_id, job = lab.claim(WorkerId.here())
    JobRunner(lab, job_id, job["runs"], threading.Event()).run()  # trained here: this client has no worker

    response = client.post(f"/api/runs/{parent}/continue", json={"l1_reg": 0.01, "steps": 64})
    assert response.status_code == 201
    child = client.get(f"/api/runs/{response.get_json()['id']}").get_json()
    assert child["start"] == {"run": parent, "label": "api", "step": 32, "bias_push": 0.0, "offset": 32}
    assert child["label"] == "api → l1_reg=0.01, steps=64" and child["config"]["l1_reg"] == 0.01
    # fewer steps than the parent's snapshot interval (16) lower it too: not refused over a field never sent
    assert lab.config(parent).snapshot_every == 16
    fewer = client.post(f"/api/runs/{parent}/continue", json={"steps": 8})
    assert fewer.status_code == 201 and lab.config(fewer.get_json()["id"]).snapshot_every == 8
    client.delete(f"/api/runs/{fewer.get_json()['id']}")
    refused = client.post(f"/api/runs/{parent}/continue", json={"n_neurons": 32, "lr": "0.1"})
    assert refused.status_code == 400
    assert set(refused.get_json()["errors"]) == {"lr"}  # the JSON-type problem first, as for POST /api/runs
    refused = client.post(f"/api/runs/{parent}/continue", json={"n_neurons": 32})
    assert "n_neurons must stay 24 when continuing run" in refused.get_json()["errors"]["n_neurons"]
    too_far = client.post(f"/api/runs/{parent}/continue", json={"init_bias": -11}).get_json()["errors"]["init_bias"]
    assert too_far == ("init_bias must be a number in [-10, 10], got -11 "
                       f"(continuing, it is the total: run {parent}'s 0 plus the push)")
    assert client.post(f"/api/runs/{parent}/continue", json=[1]).status_code == 400
    unknown = client.post(f"/api/runs/{parent}/continue", json={"step": 8}).get_json()["errors"]["step"]
    assert unknown.startswith("unknown field 'step'") and unknown.endswith("(or from_step, the saved step to start "
                                                                           "from)")
    for step in (True, 3, "8", 10**400):
        refused = client.post(f"/api/runs/{parent}/continue", json={"from_step": step})
        says = refused.get_json()["errors"]["from_step"]
        assert "from_step must be a step with saved weights (1, 2, 4, 8, 16, 32) or none" in says
    early = client.post(f"/api/runs/{parent}/continue", json={"from_step": 16}).get_json()["id"]
    assert lab.get(early)["start"]["step"] == 16
    client.delete(f"/api/runs/{early}")
    whole = client.post(f"/api/runs/{parent}/continue", json={"from_step": 16.0}).get_json()["id"]  # as steps: 8.0
    assert lab.get(whole)["start"]["step"] == 16
    client.delete(f"/api/runs/{whole}")
    assert client.post("/api/runs/nope/continue", json={}).status_code == 404
    assert len(lab.list()) == 2  # nothing more was queued


def test_fewer_steps_than_the_snapshot_interval_lower_it_in_every_api_path():
    """As the CLI: `{"steps": 8}` (or 8.0) is not refused over a snapshot_every the client never sent."""
    from app.api_json import json_config
    from app.api_sweeps import parse_sweep

    for steps in (8, 8.0):
        config, errors = json_config({"steps": steps}, None)
        assert errors == {} and config.snapshot_every == 8
    sweep, errors = parse_sweep({"preset": "LR3", "set": {"steps": 8}})
    assert errors == {} and sweep.base.snapshot_every == 8
    sweep, errors = parse_sweep({"preset": "quick-negative-bias", "field": "steps", "values": [8, 16]})
    assert errors == {} and sweep.base.snapshot_every == 8
    _, errors = parse_sweep({"preset": "LR3", "set": {"steps": 8, "snapshot_every": 16}})
    assert "snapshot_every must be between 1 and steps (8), got 16" in errors["set"]  # given: checked as given


def test_a_control_names_every_run_of_the_job_it_acts_on(client, lab):
    """Stop on one run of a batched sweep stops its whole job: the response says which runs that was."""
    made = client.post("/api/sweeps", json={"preset": "demo-tiny", "field": "init_bias", "values": [0, -1]}).get_json()
    assert made["jobs"] == 1
    paused = client.post(f"/api/runs/{made['runs'][0]}/pause").get_json()
    assert paused["status"] == "paused" and paused["job_runs"] == made["runs"]
    assert lab.get(made["runs"][1])["status"] == "paused"
    alone = client.post("/api/runs", json=GOOD).get_json()["id"]
    assert client.post(f"/api/runs/{alone}/stop").get_json()["job_runs"] == [alone]


def test_a_sweeps_set_fields_are_judged_with_each_runs_value_and_a_full_disk_is_a_507(client, lab):
    """embed_dim 40 fits n_features 64 and 128 (the preset's N is 32); the lab's own check of the queued sweep
    refused it against the preset's N after the body's checks had passed."""
    made = client.post("/api/sweeps", json={"preset": "demo-tiny", "field": "n_features", "values": [64, 128],
                                            "set": {"embed_dim": 40, "steps": 4}})
    assert made.status_code == 201 and {lab.config(r).embed_dim for r in made.get_json()["runs"]} == {40}
    lab.store.free_bytes = lambda: 0  # the server's disk, not the client's request, is what is short
    full = client.post("/api/runs", json=GOOD)
    assert full.status_code == 507 and "would keep up to" in full.get_json()["errors"]["disk"]
    assert full.get_json()["error"] == full.get_json()["errors"]["disk"]


def test_a_long_run_or_sweep_is_answered_with_how_long_it_takes(client):
    """The form says it under Start; a script queueing a paper-scale run (~10 h on this CPU) was told nothing."""
    long_run = client.post("/api/runs", json={"preset": "LR3"}).get_json()
    assert long_run["note"].startswith("A long run (131,072 steps of ") and " h on a 2-core CPU" in long_run["note"]
    assert "note" not in client.post("/api/runs", json=GOOD).get_json()
    sweep = client.post("/api/sweeps", json={"preset": "LR3", "scale": "paper", "values": [0.01]}).get_json()
    assert sweep["note"].startswith("A long sweep: about ") and "on a 2-core CPU" in sweep["note"]
