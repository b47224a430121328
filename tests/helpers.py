"""Shared test helpers: waiting on conditions rather than sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def dash_call(app: Any, output_part: str, values: dict[str, Any], changed: list[str]) -> tuple[int, dict[str, Any]]:
    """Run the callback with `output_part` among its outputs and `changed[0]` among its inputs, as the browser does;
    returns (status, {id: {property: value}} sent)."""
    output = next(o for o, spec in app.callback_map.items() if output_part in o and changed[0] in
                  [f"{i['id']}.{i['property']}" for i in spec["inputs"]])
    spec = app.callback_map[output]
    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1].split("@")[0]}
               for part in output.strip(".").split("...")]
    given = [[{**item, "value": values.get(f"{item['id']}.{item['property']}")} for item in spec[kind]]
             for kind in ("inputs", "state")]
    answer = app.server.test_client().post("/_dash-update-component", json={
        "output": output, "outputs": outputs if len(outputs) > 1 else outputs[0], "inputs": given[0],
        "state": given[1], "changedPropIds": changed})
    return answer.status_code, (answer.get_json() or {}).get("response", {}) if answer.status_code == 200 else {}


def with_library_lamb(trainer: Any) -> Any:
    """A single-run Trainer stepping with pytorch-optimizer's Lamb itself (the reference StackedLamb is tested
    against; the engine's own single runs used it before every run took StackedLamb)."""
    import torch

    from core.stacked_lamb import paper_lamb
    from core.train import COSINE_T_MAX

    run = trainer.weights[0]
    trainer.w1.grad = trainer.b1.grad = trainer.w2.grad = None
    run.w1.grad, run.b1.grad, run.w2.grad = trainer.grads.w1[0], trainer.grads.b1[0], trainer.grads.w2[0]
    trainer.optimizer = paper_lamb(run.tensors(), lr=trainer.configs[0].lr)
    trainer.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(trainer.optimizer, T_max=COSINE_T_MAX, eta_min=0.0)
    return trainer


def diverging_config() -> Any:
    """A tiny SoLU run whose learning rate is far too high: its loss becomes inf after step 128 (at 159 on this
    machine), after the paper's log2 copies at steps 1 to 128 were saved."""
    from core.presets import PRESETS

    return PRESETS["demo-tiny"].config.replace(nonlinearity="solu", lr=1.0, init_bias=5.0, steps=2000,
                                               snapshot_every=50, device="cpu")
