"""Validation during training: loss, RMSE per variable against persistence,
the power-spectrum ratio of diffusion samples, and a few PNG panels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets
from stormcast_plugin.diffusion.samplers import make_generators
from stormcast_plugin.train.loop import net_inputs
from stormcast_plugin.statistics.spectrum import radial_spectrum

__all__ = ["radial_spectrum", "validation_metrics"]


def _valid_batches(trainer: Any) -> list[dict[str, torch.Tensor]]:
    vs = trainer.valid_set
    n = len(vs)
    m = trainer.training.micro_batch
    count = min(trainer.training.valid_batches * m, n)
    idx = np.linspace(0, n - 1, count).round().astype(int).tolist() if count else []
    return [trainer._collate(idx[s:s + m], vs) for s in range(0, len(idx), m)]


@torch.no_grad()
def validation_metrics(trainer: Any, net: torch.nn.Module) -> dict[str, float]:
    """Metrics on the validation set (rank 0 computes; others return {})."""
    if not trainer.dist.main or trainer.valid_set is None or len(trainer.valid_set) == 0:
        return {}
    net.eval()
    batches = _valid_batches(trainer)
    std = torch.as_tensor(np.asarray(trainer.valid_set.stats["state_std"]), dtype=torch.float32,
                          device=trainer.dist.device)
    names = list(trainer.valid_set.state_variables)
    losses, se_model, se_pers, count = [], 0.0, 0.0, 0
    spec_ratio = []
    first = None
    for bi, batch in enumerate(batches):
        gens = [torch.Generator().manual_seed(10_000 + bi * 100 + j) for j in range(batch["state"].shape[0])]
        losses.append(float(trainer.loss(batch, gens, model=net)))
        x, nxt = batch["state"], batch["next_state"]
        if trainer.stage == "regression":
            pred = trainer.nets.regression_mean(**net_inputs(batch), net=net)
        else:
            nets = StormCastNets(trainer.regression, net)
            steps = min(trainer.config.sampler.num_steps, 8)
            pred = nets.step(**net_inputs(batch), sampler=SamplerOptions(num_steps=steps),
                             generators=make_generators([bi * 100 + j for j in range(x.shape[0])]))
            spec_ratio.append(radial_spectrum(pred).mean(0) / radial_spectrum(nxt).mean(0).clamp(min=1e-12 / nxt[0, 0].numel()))
        se_model = se_model + ((pred - nxt) ** 2).mean(dim=(0, 2, 3)) * x.shape[0]
        se_pers = se_pers + ((x - nxt) ** 2).mean(dim=(0, 2, 3)) * x.shape[0]
        count += x.shape[0]
        if first is None:
            first = (x[0], pred[0], nxt[0])
    rmse = torch.sqrt(se_model / count) * std
    rmse_p = torch.sqrt(se_pers / count) * std
    out: dict[str, float] = {"loss": float(np.mean(losses))}
    for i, n in enumerate(names):
        out[f"rmse/{n}"] = float(rmse[i])
        out[f"rmse_persistence/{n}"] = float(rmse_p[i])
    out["skill_vs_persistence"] = float((rmse / rmse_p.clamp(min=1e-12)).mean())
    if spec_ratio:
        ratio = torch.stack(spec_ratio).mean(0)  # [C, K]
        out["spectrum_ratio_high_k"] = float(ratio[:, ratio.shape[-1] // 2:].mean())
    if trainer.config.logging.panels and first is not None:
        _panels(trainer, names, first, std)
    return out


def _panels(trainer: Any, names: list[str], first: tuple, std: torch.Tensor) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from stormcast_plugin.plot.forecast import style_for

    x, pred, truth = (t.detach().cpu().float() for t in first)
    mean = torch.as_tensor(np.asarray(trainer.valid_set.stats["state_mean"]), dtype=torch.float32)[:, None, None]
    s = std.cpu()[:, None, None]
    x, pred, truth = x * s + mean, pred * s + mean, truth * s + mean
    chosen = [n for n in ("refc", "t2m", "u10m") if n in names][:2] or names[:1]
    out = trainer.dir / "panels"
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(chosen), 3, figsize=(10, 3.2 * len(chosen)), squeeze=False)
    for row, n in enumerate(chosen):
        i = names.index(n)
        st = style_for(n)
        vmin, vmax = st.get("vmin"), st.get("vmax")
        if vmin is None:
            vmin, vmax = float(truth[i].min()), float(truth[i].max())
        for col, (title, field) in enumerate((("now (persistence)", x[i]), ("predicted +1 h", pred[i]),
                                              ("truth +1 h", truth[i]))):
            ax = axes[row][col]
            im = ax.imshow(field.numpy(), origin="lower", cmap=st["cmap"], vmin=vmin, vmax=vmax)
            ax.set_title(f"{n} {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axes[row].tolist(), label=st.get("units", ""), shrink=0.8)
    fig.suptitle(f"{trainer.stage} validation, step {trainer.step}")
    fig.savefig(out / f"step-{trainer.step:08d}.png", dpi=80)
    plt.close(fig)
