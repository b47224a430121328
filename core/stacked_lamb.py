"""pytorch-optimizer's LAMB, as the paper's code ran it, and the same for R runs stacked on a leading axis.

Batched runs need one trust ratio per run and tensor; given each run's tensors separately, the library loops over
them (on the CPU its foreach ops fall back to one kernel per tensor), which cost 35% of a six-run quick step. This
optimizer does the library's update on the stacked tensors, taking the norms per run, with the library's defaults
read from it (betas, eps, the weight-norm clamp). Every run trains with it, a single one as a stack of one: then a
run trains the same numbers alone as in a batch. tests/test_train.py checks that runs trained with it equal the same
runs trained with the library's `Lamb` itself (`paper_lamb`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_optimizer import Lamb

# ALGORITHM.md: the paper code's LAMB takes steps of lr * trust ratio * adam step with no bias correction.
# pytorch-optimizer's Lamb divides the step by 1 - beta1^t unless `adam_debias` is set (its docs: "only
# corrects the denominator"); with it set, the step is lr, as in the paper's code. Tested in test_train.
PAPER_LAMB_OPTIONS = {"adam_debias": True}


def paper_lamb(params: Sequence[torch.Tensor], lr: float) -> Lamb:
    """pytorch-optimizer's Lamb configured as the paper code's LAMB."""
    return Lamb(params, lr=lr, **PAPER_LAMB_OPTIONS)


SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def _library_defaults() -> dict:
    reference = paper_lamb([torch.zeros(1)], lr=1e-3)
    d = reference.defaults
    # The paper code's LAMB: none of the library's variants (ALGORITHM.md, "Loss and training").
    assert not (d["rectify"] or d["adam"] or reference.pre_norm or d["weight_decay"]), d
    return {"betas": d["betas"], "eps": d["eps"], "clamp": reference.clamp, "grad_averaging": d["grad_averaging"]}


class StackedLamb(torch.optim.Optimizer):
    """LAMB over tensors of shape (R, ...) with a learning rate and a trust ratio per run.

    The group's `lr` is a factor on every run's rate (1 at the start), so a torch LR scheduler on
    this optimizer scales all runs' rates alike, as it scales each run's own rate when alone. The step
    reads that factor from the device tensor `rate`, which `step` fills from the group; while a CUDA
    graph is being captured it is left alone, so that the graph reads the factor its caller fills
    before each replay (`sync_rate`).
    """

    def __init__(self, params: Sequence[torch.Tensor], run_lrs: Sequence[float]):
        defaults = _library_defaults()
        super().__init__(list(params), {"lr": 1.0, **defaults})
        self._update_buffers: dict[torch.Tensor, torch.Tensor] = {}
        device = self.param_groups[0]["params"][0].device
        self.run_lrs = torch.tensor(list(run_lrs), dtype=torch.float32, device=device)
        self.rate = torch.ones((), dtype=torch.float32, device=device)

    def sync_rate(self) -> None:
        """Copy the group's (scheduled) rate factor into `rate`, where the update reads it."""
        self.rate.fill_(self.param_groups[0]["lr"])

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001 (torch's Optimizer signature)
        if self.rate.device.type != "cuda" or not torch.cuda.is_current_stream_capturing():
            self.sync_rate()
        # The trust ratios of every run and tensor are computed in one (R, tensors) array: fewer tiny kernels.
        # Elementwise work stays one kernel per tensor: with torch's multi-tensor (foreach) kernels instead, a
        # graphed paper-scale step on an H100 ran slower, and they took ~90 us of its ~490 (benchmarks/RESULTS.md).
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            beta3 = 1.0 - beta1 if group["grad_averaging"] else 1.0
            eps = group["eps"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            updates = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if p not in self._update_buffers:  # scratch, not state: rebuilt after a checkpoint load
                    self._update_buffers[p] = torch.empty_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(p.grad, alpha=beta3)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                # torch's CPU sqrt is ~8x slower on zeros (dead neurons' second moments) than on other values;
                # clamping at the smallest normal float first changes nothing once eps is added.
                update = torch.clamp(exp_avg_sq, min=SMALLEST_NORMAL, out=self._update_buffers[p]).sqrt_().add_(eps)
                updates.append(torch.div(exp_avg, update, out=update))
            runs = params[0].shape[0]
            weight_norms = torch.stack([torch.linalg.vector_norm(p.view(runs, -1), dim=1) for p in params], dim=1)
            update_norms = torch.stack([torch.linalg.vector_norm(u.view(runs, -1), dim=1) for u in updates], dim=1)
            weight_norms.clamp_(max=group["clamp"])
            trust_ratios = torch.where((weight_norms != 0) & (update_norms != 0),
                                       weight_norms / (update_norms + eps), 1.0)
            step_sizes = trust_ratios.mul_(self.run_lrs.unsqueeze(1) * self.rate)  # (R, tensors)
            for i, (p, update) in enumerate(zip(params, updates)):
                p.addcmul_(update, step_sizes[:, i].view(-1, *([1] * (p.dim() - 1))), value=-1.0)


def stacked_from_library(optimizer_state: dict, scheduler_state: dict, stacked_state: dict,
                         run_lr: float) -> tuple[dict, dict]:
    """A single run's library-LAMB checkpoint (optimizer and cosine scheduler states) as StackedLamb's, whose
    moments carry a runs axis and whose group rate is a factor on the run's learning rate; `stacked_state` is the
    StackedLamb's own state_dict, for its group's options."""
    moments = {index: {name: saved[name].unsqueeze(0) for name in ("exp_avg", "exp_avg_sq")}
               for index, saved in optimizer_state["state"].items()}
    group = {**stacked_state["param_groups"][0], "lr": optimizer_state["param_groups"][0]["lr"] / run_lr,
             "initial_lr": 1.0}
    scheduler = {**scheduler_state, "base_lrs": [1.0],
                 "_last_lr": [lr / run_lr for lr in scheduler_state["_last_lr"]]}
    return {"state": moments, "param_groups": [group]}, scheduler


def moments_fit(optimizer_state: dict, params: Sequence[torch.Tensor]) -> bool:
    """Whether a saved LAMB state's moments have the shapes of `params` (or there are none yet: no step taken)."""
    states = optimizer_state.get("state") if isinstance(optimizer_state, dict) else None
    if not isinstance(states, dict):
        return False
    return not states or (len(states) == len(params) and all(
        tuple(getattr(states.get(i, {}).get(name), "shape", ())) == tuple(p.shape)
        for i, p in enumerate(params) for name in ("exp_avg", "exp_avg_sq")))
