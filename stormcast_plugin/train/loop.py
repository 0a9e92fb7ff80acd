"""The training loop for both StormCast stages.

* ``regression``: ``r = R(cat[x_t, e_t, inv])``, MSE to ``x_{t+1}``.
* ``diffusion``: the regression net is frozen; the EDM loss is trained on the
  residual ``y = x_{t+1} - r`` with the condition ``cat[x_t, r, inv]``.

Data order, noise and dropout are functions of (seed, step): sample ``k`` of
the run (``k = step * batch_size + j``) is item ``perm_e[k mod n]`` of the
epoch permutation ``perm_e``; its EDM noise comes from a generator seeded by
``(seed, step, j)``. So a run resumed from a checkpoint continues exactly as
it would have, and ``R`` ranks with micro-batch ``m`` and ``A`` accumulation
steps see the same global batch (``m * R * A``) as one process.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from stormcast_plugin.models.nn import EDMPrecond, RegressionNet, SongUNetConfig, StormCastNets
from stormcast_plugin.train.checkpoint import (
    latest_checkpoint,
    nonfinite_tensors,
    remove_temporaries,
    save_checkpoint,
)
from stormcast_plugin.train.config import Config, ModelConfig, TrainingConfig

__all__ = ["DistInfo", "Trainer", "TrainingError", "dist_info", "learning_rate", "net_inputs", "sample_generators"]

# The fields of a sample that go on the device (``local_time`` only when the data has it).
_BATCH_KEYS = ("state", "next_state", "conditioning", "invariants", "local_time")


class TrainingError(RuntimeError):
    """Training cannot go on (the weights became NaN or infinite)."""


# --------------------------------------------------------------------------- distributed
class DistInfo:
    """Rank, world size and device of this process."""

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device) -> None:
        self.rank, self.world, self.local_rank, self.device = rank, world, local_rank, device

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info(device: str | None = None) -> DistInfo:
    """Set up ``torch.distributed`` from torchrun's environment (if any).

    gloo on CPU, nccl on CUDA. Single process without ``WORLD_SIZE``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or device == "auto":
        dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


# --------------------------------------------------------------------------- schedule & order
def learning_rate(step: int, t: TrainingConfig, steps: int) -> float:
    """Linear warm-up to ``t.lr``, then constant or cosine decay to ``t.min_lr``
    at ``steps``, the stage's last step."""
    lr, warm = t.lr, t.warmup_steps
    if warm and step < warm:
        return lr * (step + 1) / warm
    if t.schedule == "cosine":
        total = max(steps - warm, 1)
        frac = min(max(step - warm, 0) / total, 1.0)
        return t.min_lr + 0.5 * (lr - t.min_lr) * (1 + math.cos(math.pi * frac))
    return lr


def _epoch_perm(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


class _Order:
    """Maps the run-wide sample counter to dataset indices (epoch permutations)."""

    def __init__(self, seed: int, n: int) -> None:
        self.seed, self.n = seed, n
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, k: int) -> int:
        epoch, pos = divmod(k, self.n)
        if epoch not in self._cache:
            self._cache = {epoch: _epoch_perm(self.seed, epoch, self.n)}
        return int(self._cache[epoch][pos])


def sample_generators(seed: int, step: int, positions: list[int]) -> list[torch.Generator]:
    """One generator per global batch position, independent of rank."""
    gens = []
    for j in positions:
        s = np.random.SeedSequence([seed, step, j, 11]).generate_state(1, dtype=np.uint64)[0] >> 1
        gens.append(torch.Generator().manual_seed(int(s)))
    return gens


# --------------------------------------------------------------------------- nets
def build_network(stage: str, model: ModelConfig, c: int, ce: int, ci: int,
                  shape: tuple[int, int]) -> torch.nn.Module:
    """A new regression or diffusion network for ``c`` state, ``ce``
    conditioning and ``ci`` invariant channels on a grid of ``shape``."""
    net = model.network(stage, c, ce, ci, shape)
    if stage == "regression":
        return RegressionNet(net, residual=model.regression_residual)
    return EDMPrecond(net, sigma_data=model.sigma_data)


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Train one stage of a StormCast run.

    Parameters
    ----------
    config : Config
        The run's configuration (:func:`~stormcast_plugin.train.config.load_config`).
    run_dir : path-like
        The run folder; this stage writes into ``run_dir/<stage>``.
    stage : str
        ``"regression"`` or ``"diffusion"``.
    train_set, valid_set : StormCastDataset
        Training and validation samples.
    dist : DistInfo, optional
        From :func:`dist_info`; single process on the CPU by default.
    progress : bool
        Show a progress bar (rank 0).
    stop_after : int, optional
        Stop (as if killed) after this many steps of this invocation; for tests.
    """

    def __init__(self, config: Config, run_dir: str | Path, stage: str, train_set: Any,
                 valid_set: Any = None, *, dist: DistInfo | None = None, progress: bool = True,
                 stop_after: int | None = None) -> None:
        if stage not in ("regression", "diffusion"):
            raise ValueError(f"stage {stage!r} must be 'regression' or 'diffusion'")
        self.config = config
        self.stage = stage
        self.training = t = config.stage_training(stage)  # the training section as this stage sets it
        self.steps = config.stage(stage).steps
        self.dir = Path(run_dir) / stage
        self.ckpt_dir = self.dir / "checkpoints"
        self.train_set, self.valid_set = train_set, valid_set
        self.dist = dist or DistInfo(0, 1, 0, torch.device("cpu"))
        self.progress = progress
        self.stop_after = stop_after
        per_pass = t.micro_batch * self.dist.world
        if t.batch_size % per_pass:
            raise ValueError(
                f"training.batch_size = {t.batch_size} is not a multiple of micro_batch x ranks = "
                f"{t.micro_batch} x {self.dist.world}; change one of them"
            )
        self.accum = t.batch_size // per_pass
        if t.precision == "fp16" and self.dist.device.type != "cuda":
            raise ValueError("training.precision = fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        if len(train_set) == 0:
            raise ValueError("the training set has no valid samples (pairs of consecutive written hours)")

        c, ce, ci = (len(train_set.state_variables), len(train_set.conditioning_variables),
                     len(train_set.input_invariant_names))
        shape = tuple(train_set[0]["state"].shape[-2:])
        torch.manual_seed(t.seed + 1000 * self.dist.rank)
        self.net = build_network(stage, config.model, c, ce, ci, shape).to(self.dist.device)
        self.ema = copy.deepcopy(self.net).eval() if t.ema_decay else None
        self.regression: RegressionNet | None = None
        if stage == "diffusion":
            self.regression = load_stage_network(Path(run_dir), "regression").to(self.dist.device).eval()
            for p in self.regression.parameters():
                p.requires_grad_(False)
        # The network inputs and the losses; self.model (wrapped) runs in place of self.net.
        self.nets = StormCastNets(self.net) if stage == "regression" else StormCastNets(self.regression, self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=t.lr, betas=t.betas)
        self.model = self.net
        if self.dist.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None)
        if t.compile:
            self.model = torch.compile(self.model)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.order = _Order(t.seed, len(train_set))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.spread_calibration: list[float] | None = None
        self._writer = None
        self._wandb = None
        self._tensorboard, self._use_wandb = config.logging.tensorboard, config.logging.wandb
        if self.dist.main:
            for path in remove_temporaries(self.ckpt_dir):
                print(f"[{stage}] removed {path}, a checkpoint whose writing was interrupted", flush=True)
        self._resume()
        if self.step == 0 and config.model.residual_scaling == "rms":
            self._set_scales()

    # ---------------------------------------------------------------- residual scales
    def _set_scales(self) -> None:
        """``model.residual_scaling: rms`` at the start of a stage: the
        regression net's tendency scale (residual nets) or the denoiser's
        residual scale, measured on the training set."""
        if self.stage == "regression":
            if not getattr(self.net, "residual", False):
                return  # a full-state regression net has nothing to scale
            scale = self.channel_rms(lambda b: b["next_state"] - b["state"], "x(t+1) - x(t)")
            setter = "set_tendency_scale"
        else:
            scale = self.estimate_residual_scale()
            setter = "set_residual_scale"
        for net in (self.net, self.ema):
            if net is not None:
                getattr(net, setter)(scale)

    def channel_rms(self, quantity: Callable[[dict[str, torch.Tensor]], torch.Tensor], label: str,
                    samples: int = 64) -> torch.Tensor:
        """Per-channel RMS of ``quantity(batch)`` (normalised units) over up to
        ``samples`` training samples spread evenly over the training set
        (identical on every rank; averaged across ranks), at least 1e-4."""
        n = min(int(samples), len(self.train_set))
        indices = np.unique(np.linspace(0, len(self.train_set) - 1, n).round().astype(int)).tolist()
        total = None
        count = 0
        m = self.training.micro_batch
        with torch.no_grad():
            for i in range(0, len(indices), m):
                q = quantity(self._collate(indices[i:i + m])).float()
                sq = (q ** 2).sum(dim=(0, 2, 3)).double()
                total = sq if total is None else total + sq
                count += q.shape[0] * q.shape[2] * q.shape[3]
        total = total / count
        if self.dist.world > 1:
            torch.distributed.all_reduce(total)
            total = total / self.dist.world
        # A channel predicted exactly would get a zero scale.
        rms = torch.clamp(total.sqrt().float().cpu(), min=1e-4)
        if self.dist.main:
            names = getattr(self.train_set, "state_variables", [str(k) for k in range(len(rms))])
            shown = ", ".join(f"{v} {r:.3g}" for v, r in zip(names, rms.tolist()))
            print(f"[{self.stage}] RMS of {label} (normalised units): {shown}", flush=True)
        return rms

    def estimate_residual_scale(self, samples: int = 64) -> torch.Tensor:
        """The denoiser's residual scale ``RMS(x_{t+1} - r) / sigma_data``
        (:meth:`channel_rms` of the frozen regression's residual). Dividing by
        ``sigma_data`` makes the scaled residual the denoiser learns have the
        standard deviation its EDM preconditioning assumes."""

        def residual(b: dict[str, torch.Tensor]) -> torch.Tensor:
            return b["next_state"] - self.nets.regression_mean(**net_inputs(b), autocast_dtype=self._autocast_dtype())

        rms = self.channel_rms(residual, "x(t+1) - regression", samples)
        return rms / float(self.net.sigma_data)

    def calibrate_spread(self, samples: int) -> torch.Tensor:
        """Match the RMS of sampled residuals to that of the true ones, per channel.

        On up to ``samples`` samples spread over the validation set (the
        training set when there is none), one step is sampled from each state
        (the configured sampler, seeded from ``training.seed``) and compared
        with the true next state: the factor
        ``RMS(x_{t+1} - r) / RMS(sampled - r)`` (``r`` the regression mean,
        clamped to [0.25, 4]) is kept in the checkpoint and multiplies the
        denoiser's ``residual_scale`` when the network is loaded for use
        (:func:`load_stage_network`, export), so the one-hour ensemble spread
        has the size of the one-hour residual. Training itself is unchanged.
        Returns the factors.
        """
        data = self.valid_set if self.valid_set is not None else self.train_set
        n = min(int(samples), len(data))
        indices = np.unique(np.linspace(0, len(data) - 1, n).round().astype(int)).tolist()
        net = self.ema if self.ema is not None else self.net
        was_training = net.training
        net.eval()
        nets = StormCastNets(self.regression, net)
        true_sq = sampled_sq = None
        m = self.training.micro_batch
        with torch.no_grad():
            for i in range(0, len(indices), m):
                b = self._collate(indices[i:i + m], data)
                gens = sample_generators(self.training.seed + 7919, 0, indices[i:i + m])
                mean = nets.regression_mean(**net_inputs(b), autocast_dtype=self._autocast_dtype())
                nxt = nets.step(**net_inputs(b), sampler=self.config.sampler, generators=gens,
                                autocast_dtype=self._autocast_dtype())
                t_sq = ((b["next_state"] - mean) ** 2).sum(dim=(0, 2, 3)).double()
                s_sq = ((nxt - mean) ** 2).sum(dim=(0, 2, 3)).double()
                true_sq = t_sq if true_sq is None else true_sq + t_sq
                sampled_sq = s_sq if sampled_sq is None else sampled_sq + s_sq
        net.train(was_training)
        factor = torch.clamp((true_sq / sampled_sq.clamp(min=1e-30)).sqrt().float().cpu(), 0.25, 4.0)
        self.spread_calibration = factor.tolist()
        if self.dist.main:
            names = getattr(data, "state_variables", [str(k) for k in range(len(factor))])
            shown = ", ".join(f"{v} {f:.3g}" for v, f in zip(names, self.spread_calibration))
            print(f"[{self.stage}] spread calibration on {len(indices)} samples, residual scale x {shown}",
                  flush=True)
            self._log({"step": self.step, **{f"spread_factor/{v}": f for v, f in
                                               zip(names, self.spread_calibration)}}, "calibration")
        return factor

    # ---------------------------------------------------------------- state
    def _resume(self) -> None:
        found = latest_checkpoint(self.ckpt_dir)
        if found is None:
            return
        payload, path = found
        self._check_same_network(payload, path)
        self.net.load_state_dict(payload["model"])
        if self.ema is not None and payload.get("ema") is not None:
            self.ema.load_state_dict(payload["ema"])
        self.opt.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"][self.dist.rank] if isinstance(payload["rng"], list) else payload["rng"])
        self.step = int(payload["step"])
        self.history = [dict(h) for h in payload.get("history", [])]
        self.spread_calibration = payload.get("spread_calibration")
        if self.dist.main:
            print(f"[{self.stage}] resumed from {path} (step {self.step})", flush=True)

    def _check_same_network(self, payload: Mapping[str, Any], path: Path) -> None:
        """A checkpoint of another architecture means the run directory holds another run."""
        ours = self.net.config.to_dict()
        saved = payload.get("net_config")
        diffs = []
        if saved is not None:
            saved = SongUNetConfig.from_dict(saved).to_dict()
            diffs = [f"{k}: {saved.get(k)!r} there, {ours.get(k)!r} here" for k in ours if saved.get(k) != ours.get(k)]
        if self.stage == "regression" and bool(payload.get("residual", False)) != bool(self.net.residual):
            diffs.append(f"residual: {bool(payload.get('residual', False))} there, {bool(self.net.residual)} here")
        if diffs:
            raise ValueError(
                f"{path} holds a {self.stage} network unlike the one this configuration builds ("
                + "; ".join(diffs) + f"). {self.ckpt_dir.parent.parent} belongs to another run: resume it "
                "with its own config.yaml, or train in a new --run-dir"
            )

    def _payload(self) -> dict[str, Any]:
        rng = torch.get_rng_state()
        if self.dist.world > 1:
            gathered = [torch.empty_like(rng) for _ in range(self.dist.world)]
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        return {
            "format": "stormcast-train-checkpoint",
            "version": 1,
            "stage": self.stage,
            "step": self.step,
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.opt.state_dict(),
            "rng": rng,
            "history": self.history,
            "net_config": self.net.config.to_dict(),
            "residual": bool(getattr(self.net, "residual", False)),
            "sigma_data": float(getattr(self.net, "sigma_data", 0.5)),
            "spread_calibration": self.spread_calibration,
        }

    def save(self) -> Path | None:
        payload = self._payload()  # every rank takes part in the gather
        if not self.dist.main:
            return None
        return save_checkpoint(self.ckpt_dir, self.step, payload, keep=self.training.keep_checkpoints)

    # ---------------------------------------------------------------- batches
    def _positions(self, a: int) -> list[int]:
        m, r, w = self.training.micro_batch, self.dist.rank, self.dist.world
        start = a * m * w + r * m
        return list(range(start, start + m))

    def _collate(self, indices: list[int], dataset: Any = None) -> dict[str, torch.Tensor]:
        items = [(self.train_set if dataset is None else dataset)[i] for i in indices]
        return {k: torch.stack([it[k] for it in items]).to(self.dist.device) for k in _BATCH_KEYS if k in items[0]}

    def _batches(self, step: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        base = step * self.training.batch_size
        for a in range(self.accum):
            pos = self._positions(a)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch((base + pos[0]) // len(self.train_set))
            yield pos, self._collate([self.order(base + j) for j in pos])

    # ---------------------------------------------------------------- loss
    def _autocast_dtype(self) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.training.precision]

    def loss(self, batch: Mapping[str, torch.Tensor], gens: list[torch.Generator],
             model: torch.nn.Module | None = None) -> torch.Tensor:
        """Mean loss of a batch (regression MSE or EDM loss), ``model`` (by
        default the trained network, wrapped) in place of the network trained."""
        kw = dict(net_inputs(batch), next_state=batch["next_state"], net=model or self.model,
                  autocast_dtype=self._autocast_dtype())
        if self.stage == "regression":
            noise = self.config.regression.input_noise if model is None else 0.0  # validation sees clean inputs
            return self.nets.regression_loss(**kw, input_noise=noise, generators=gens)
        return self.nets.diffusion_loss(**kw, generators=gens, P_mean=self.training.P_mean,
                                        P_std=self.training.P_std)

    # ---------------------------------------------------------------- step
    def train_step(self) -> dict[str, float]:
        """One optimiser step over the global batch."""
        self.model.train()
        lr = learning_rate(self.step, self.training, self.steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for a, (pos, batch) in enumerate(self._batches(self.step)):
            gens = sample_generators(self.training.seed, self.step, pos)
            sync = a == self.accum - 1 or self.dist.world == 1
            ctx = self.model.no_sync() if (not sync and hasattr(self.model, "no_sync")) else contextlib.nullcontext()
            with ctx:
                loss = self.loss(batch, gens) / self.accum
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            total += float(loss.detach())
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        bad = 0
        for p in self.net.parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                bad += 1
                torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.net.parameters(), self.training.clip_grad or float("inf"))
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        broken = nonfinite_tensors(self.net.state_dict())
        if broken:
            raise TrainingError(
                f"[{self.stage}] step {self.step + 1}: the weights became NaN or infinite in {broken[:4]}"
                f"{' ...' if len(broken) > 4 else ''} at learning rate {lr:g}; the run diverged and this step is "
                "not saved. Lower training.lr (or set training.clip_grad) and run again: it resumes from the "
                "last checkpoint"
            )
        if self.ema is not None:
            d = self.training.ema_decay
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.net.parameters()):
                    pe.lerp_(p.detach(), 1.0 - d)
        if self.dist.world > 1:
            t = torch.tensor([total], device=self.dist.device)
            torch.distributed.all_reduce(t)
            total = float(t) / self.dist.world
        self.step += 1
        record = {"step": self.step, "loss": total, "lr": lr, "grad_norm": float(grad_norm),
                  "nonfinite_grads": bad}
        self.history.append(record)
        return record

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss and RMSE per variable against persistence."""
        from stormcast_plugin.train.validate import validation_metrics

        net = self.ema if self.ema is not None else self.net
        return validation_metrics(self, net)

    # ---------------------------------------------------------------- logging
    def _log(self, record: Mapping[str, float], prefix: str) -> None:
        if not self.dist.main:
            return
        with open(self.dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"kind": prefix, **record}) + "\n")
        if self._writer is None and self._tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:
                self._tensorboard = False
                print("TensorBoard is not installed (pip install tensorboard); logging to metrics.jsonl only")
        if self._writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._writer.add_scalar(f"{self.stage}/{prefix}/{k}", v, record.get("step", self.step))
        if self._use_wandb and self._wandb is None:
            try:
                import wandb

                self._wandb = wandb.init(project=self.config.logging.wandb_project,
                                         config=self.config.to_dict(), name=f"{self.dir.parent.name}-{self.stage}")
            except ImportError:
                self._use_wandb = False
                print("wandb is not installed; set logging.wandb: false or pip install wandb")
        if self._wandb is not None:
            self._wandb.log({f"{self.stage}/{prefix}/{k}": v for k, v in record.items() if k != "step"},
                            step=record.get("step", self.step))

    # ---------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Train to ``steps`` (resuming if checkpoints exist); return a summary."""
        from tqdm.auto import tqdm

        steps = self.steps
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main and self.step == 0:
            (self.dir / "metrics.jsonl").write_text("")
        elif self.dist.main:  # keep the log consistent with the checkpoint resumed from
            lines = [json.dumps({"kind": "train", **h}) for h in self.history]
            (self.dir / "metrics.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))
        bar = tqdm(total=steps, initial=self.step, disable=not (self.progress and self.dist.main),
                   desc=self.stage, unit="step")
        done = 0
        last_valid: dict[str, float] = {}
        if self.step < steps:
            self.spread_calibration = None  # measured again once the new steps are done
        while self.step < steps:
            t0 = time.perf_counter()
            record = self.train_step()
            rate = self.training.batch_size / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{rate:.1f}")
            if self.step % self.training.log_every == 0 or self.step == steps:
                self._log({**record, "samples_per_s": rate}, "train")
            if self.valid_set is not None and (self.step % self.training.valid_every == 0 or self.step == steps):
                last_valid = self.validate()
                self._log({"step": self.step, **last_valid}, "valid")
            if self.step % self.training.checkpoint_every == 0 or self.step == steps:
                self.save()
            done += 1
            if self.stop_after is not None and done >= self.stop_after:
                break
        bar.close()
        calibrate = self.config.diffusion.calibrate_spread if self.stage == "diffusion" else 0
        if calibrate > 0 and self.step >= steps and self.spread_calibration is None:
            self.calibrate_spread(calibrate)
            self.save()
        if self._writer is not None:
            self._writer.flush()
        return {"stage": self.stage, "step": self.step, "history": self.history, "valid": last_valid,
                "spread_calibration": self.spread_calibration}


def net_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """The network inputs of a batch as keyword arguments of the
    :class:`~stormcast_plugin.models.nn.stormcast_nets.StormCastNets` methods
    (``extra``: the local-time channels, when the data has them)."""
    return {"state": batch["state"], "conditioning": batch["conditioning"], "invariants": batch["invariants"],
            "extra": batch.get("local_time")}


def load_stage_network(run_dir: Path, stage: str, *, ema: bool = True) -> torch.nn.Module:
    """The latest weights of a finished (or running) stage, EMA when available."""
    found = latest_checkpoint(Path(run_dir) / stage / "checkpoints")
    if found is None:
        raise FileNotFoundError(
            f"no {stage} checkpoint in {Path(run_dir) / stage / 'checkpoints'}; train the {stage} stage first"
        )
    payload, path = found
    cfg = SongUNetConfig.from_dict(payload["net_config"])
    if stage == "regression":
        net = RegressionNet(cfg, residual=bool(payload.get("residual", False)))
    else:
        net = EDMPrecond(cfg, payload.get("sigma_data", 0.5))
    weights = payload["ema"] if (ema and payload.get("ema") is not None) else payload["model"]
    broken = nonfinite_tensors(weights)
    if broken:
        raise ValueError(
            f"{path} holds NaN or infinite {stage} weights in {broken[:4]}{' ...' if len(broken) > 4 else ''}: "
            f"that run diverged. Train the {stage} stage again (with a lower training.lr) in a new --run-dir"
        )
    net.load_state_dict(weights)
    if stage == "diffusion" and payload.get("spread_calibration") is not None:
        net.set_residual_scale(net.residual_scale * torch.as_tensor(payload["spread_calibration"]))
    return net.eval()
