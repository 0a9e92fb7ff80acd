"""Per-member sampler noise: seeds, generators and the AR(1) noise memory.

Every random number of a forecast comes from a generator seeded by
:func:`member_seed` from ``(forecast seed, member, initial time, lead time)``,
so a member's noise is the same whatever batch, rank or order it runs in.

Generators live on the CPU by default: the same seed gives the same numbers
on every machine. With ``device`` set to a CUDA device they live there (no
host work, no copy to the device), but CUDA's random streams are not the
CPU's: a forecast made with device-side noise is reproduced exactly only
with device-side noise on the same kind of device.

With a noise memory (``noise_memory_h`` > 0) a member's initial sampler noise
is an AR(1) process over the hourly steps (:func:`member_noise`), summed
from up to ``ceil(3 tau) + 1`` innovation fields. :class:`NoiseMemory` keeps
the innovations of a rollout between steps, so each member-step draws one
new field; its sums are those of :func:`member_noise`, bit for bit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["NoiseMemory", "ar1_weights", "member_noise", "member_seed", "step_generators"]

_ONE_HOUR = np.timedelta64(1, "h")
_NOISE_STREAM = 1  # member_seed stream of the innovations of the correlated sampler noise


def member_seed(seed: int, member: int, time: np.datetime64, lead_time: np.timedelta64, stream: int = 0) -> int:
    """The noise seed of one member at one step.

    Derived from the forecast seed, the member's ensemble index, the initial
    time and the lead time, so it is the same whatever batch, rank or order
    the member runs in. ``stream`` > 0 gives further independent seeds for
    the same step.
    """
    t = int(np.datetime64(time, "s").astype("int64"))
    lead = int(np.timedelta64(lead_time, "s").astype("int64"))
    entropy = [int(seed) & 0xFFFFFFFF, int(member), t & 0xFFFFFFFF, (t >> 32) & 0xFFFFFFFF, lead & 0xFFFFFFFF]
    if stream:
        entropy.append(int(stream))
    state = np.random.SeedSequence(entropy)
    return int(state.generate_state(1, dtype=np.uint64)[0] >> 1)


def _generator(seed: int, device: torch.device | str | None) -> torch.Generator:
    g = torch.Generator(device=device if device is not None else "cpu")
    g.manual_seed(seed)
    return g


def step_generators(seed: int, members: Sequence[int], times: Sequence[np.datetime64], lead_time: np.timedelta64,
                    device: torch.device | str | None = None) -> list[torch.Generator]:
    """One generator per ``(member, time)`` of a step, member-major, seeded by :func:`member_seed`."""
    return [_generator(member_seed(seed, int(m), t, lead_time), device) for m in members for t in times]


def ar1_weights(k: int, memory_h: float) -> np.ndarray:
    r"""Weights of the innovations :math:`e_k, e_{k-1}, \dots` in the noise of hour ``k``.

    :math:`w_j = \sqrt{1-\rho^2}\,\rho^j` for :math:`j < k` and :math:`\rho^k`
    for :math:`j = k`, over the last :math:`\lceil 3\tau \rceil + 1` hours at
    most, rescaled to unit variance.
    """
    rho = math.exp(-1.0 / memory_h)
    span = min(k, math.ceil(3.0 * memory_h))
    weights = np.array([math.sqrt(1.0 - rho * rho) * rho ** j if j < k else rho ** k for j in range(span + 1)])
    return weights / np.sqrt(np.sum(weights ** 2))


def _innovation(seed: int, member: int, time: np.datetime64, hour: int, shape: tuple[int, ...],
                device: torch.device | str | None) -> torch.Tensor:
    g = _generator(member_seed(seed, member, time, hour * _ONE_HOUR, stream=_NOISE_STREAM), device)
    return torch.randn(shape, generator=g, dtype=torch.float64, device=g.device)


def _weighted_sum(weights: np.ndarray, fields: Sequence[torch.Tensor]) -> torch.Tensor:
    # The one summation of the noise memory: the same order and dtype whether
    # the fields were drawn now (member_noise) or kept (NoiseMemory). Each term
    # is rounded on its own, then added (out += w * e); the product goes to a
    # reused buffer rather than a fresh field per term.
    out = torch.zeros_like(fields[0])
    term = torch.empty_like(out)
    for w, e in zip(weights, fields):
        out += torch.mul(e, float(w), out=term)
    return out.float()


def _hours(lead_time: np.timedelta64) -> int:
    hours = np.timedelta64(lead_time, "s") / _ONE_HOUR
    if hours < 0 or hours != int(hours):
        raise ValueError(f"lead_time {lead_time} is not a whole, non-negative number of hours")
    return int(hours)


def member_noise(seed: int, member: int, time: np.datetime64, lead_time: np.timedelta64,
                 shape: Sequence[int], memory_h: float, *, device: torch.device | str | None = None) -> torch.Tensor:
    r"""The initial sampler noise of one member at one step, correlated in time.

    An AR(1) process over the hourly steps, :math:`n_0 = e_0`,
    :math:`n_k = \rho\, n_{k-1} + \sqrt{1 - \rho^2}\, e_k` with
    :math:`\rho = e^{-1/\tau}` (``tau = memory_h`` hours) and independent
    standard normal innovations :math:`e_k` seeded by
    ``member_seed(seed, member, time, k h, stream=1)``. It is summed directly,
    :math:`n_k = \rho^k e_0 + \sqrt{1-\rho^2} \sum_{j<k} \rho^j e_{k-j}`,
    over the last :math:`\lceil 3\tau \rceil` hours at most (weights
    rescaled to unit variance, :func:`ar1_weights`), so a step needs no state
    from the previous one and a member's noise does not depend on the batch
    it runs in. Every :math:`n_k` is standard normal; neighbouring hours
    correlate by :math:`\rho`. A call draws up to
    :math:`\lceil 3\tau \rceil + 1` fields of ``shape``; a rollout keeps them
    in a :class:`NoiseMemory` instead and draws one per step.

    Parameters
    ----------
    seed, member, time
        As in :func:`member_seed`.
    lead_time : numpy.timedelta64
        Lead time of the step's input state (a whole number of hours).
    shape : sequence of int
        Shape of one member's state ``[C, H, W]``.
    memory_h : float
        E-folding time :math:`\tau` in hours (> 0).
    device : torch.device or str, optional
        Where the generators draw (default the CPU; see the module notes).

    Returns
    -------
    torch.Tensor
        float32 noise of ``shape``, on ``device``.
    """
    if not memory_h > 0:
        raise ValueError(f"memory_h must be > 0 hours, got {memory_h!r}")
    k = _hours(lead_time)
    weights = ar1_weights(k, memory_h)
    shape = tuple(int(s) for s in shape)
    return _weighted_sum(weights, [_innovation(seed, member, time, k - j, shape, device) for j in range(len(weights))])


class NoiseMemory:
    """The innovations of one rollout's noise memory, kept between steps.

    Calling it for the members and initial times of a step returns what
    :func:`member_noise` returns for each of them, bit for bit, drawing only
    the innovations it does not hold yet: one per member-step along a
    rollout, the whole window at its first step. It holds up to
    ``ceil(3 tau) + 1`` float64 fields per member and initial time (on the
    generators' device), and starts afresh when the seed, the memory, the
    shape or the device change.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._fields: dict[tuple[int, np.datetime64], dict[int, torch.Tensor]] = {}
        self.draws = 0  # innovation fields drawn so far

    def __call__(self, seed: int, members: Sequence[int], times: Sequence[np.datetime64], lead_time: np.timedelta64,
                 shape: Sequence[int], memory_h: float, device: torch.device | str | None = None) -> torch.Tensor:
        """Noise ``[len(members) * len(times), *shape]``, member-major, float32 on ``device``."""
        shape = tuple(int(s) for s in shape)
        key = (int(seed), float(memory_h), shape, str(device))
        if key != self._key:
            self._key, self._fields = key, {}
        k = _hours(lead_time)
        weights = ar1_weights(k, memory_h)
        out = []
        for m in members:
            for t in times:
                held = self._fields.setdefault((int(m), np.datetime64(t, "ns")), {})
                for hour in [h for h in held if h > k or h <= k - len(weights)]:
                    del held[hour]  # outside the window of this step (or of a rollout restarted earlier)
                for hour in range(k - len(weights) + 1, k + 1):
                    if hour not in held:
                        held[hour] = _innovation(seed, int(m), t, hour, shape, device)
                        self.draws += 1
                out.append(_weighted_sum(weights, [held[k - j] for j in range(len(weights))]))
        return torch.stack(out)
