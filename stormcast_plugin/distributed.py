"""Ranks of a run under ``torchrun``: who this process is, its device, and
the few collectives a forecast needs.

:func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), picks the device (``cuda:LOCAL_RANK`` where CUDA exists,
the CPU otherwise) and joins the process group (NCCL on CUDA, gloo on the
CPU). Without torchrun it returns the single process. Nothing here schedules
work: every rank of a run computes the same deal of the work and meets the
others in :meth:`Ranks.broadcast`, :meth:`Ranks.barrier` and
:meth:`Ranks.all_max`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence

import torch

__all__ = ["TIMEOUT", "Ranks", "resolve_device", "setup", "teardown"]

TIMEOUT = timedelta(hours=12)
"""How long a collective may wait for the other ranks. A rank that finishes its
share waits for the slowest one at the end of a run; torchrun stops every rank
at once when one fails, so only a rank that hangs meets this limit."""


def resolve_device(name: str = "auto", local_rank: int = 0, world: int = 1) -> torch.device:
    """The torch device for a device name, on rank ``local_rank`` of its node.

    ``auto`` is ``cuda:LOCAL_RANK`` where CUDA exists, else the CPU; ``cuda``
    is ``cuda:LOCAL_RANK``. A numbered ``cuda:N`` is taken as given in a
    single process and refused under torchrun (every rank would share it).

    Raises
    ------
    ValueError
        For an unknown device, one this machine lacks, or a node with fewer
        GPUs than ranks (naming the fix).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                             "use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and world > 1:
            raise ValueError(f"--device {name}: under torchrun every rank uses cuda:LOCAL_RANK; give --device cuda "
                             "(or auto)")
        index = local_rank if device.index is None else device.index
        if index >= count:
            what = f"local rank {local_rank} needs" if device.index is None else "it asks for"
            raise ValueError(f"--device {name}: {what} cuda:{index}, and this machine has {count} CUDA device(s); "
                             f"run at most {count} processes per node (torchrun --nproc_per_node {count})")
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "mps"):
        raise ValueError(f"--device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


@dataclass(frozen=True)
class Ranks:
    """One process of a run: its global ``rank`` among ``world`` processes,
    its ``local_rank`` on its node, and its ``device``.

    With ``world == 1`` every collective returns at once.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: the one that creates stores, prints and reports progress."""
        return self.rank == 0

    def _tensor(self, values: Sequence[int]) -> torch.Tensor:
        # NCCL reduces device tensors; gloo host tensors.
        on = self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        return torch.tensor(list(values), dtype=torch.int64, device=on)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if self.world == 1:
            return obj
        box = [obj if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.world > 1:
            torch.distributed.barrier()

    def all_max(self, values: Sequence[int], *, wait: bool = True) -> Any:
        """The element-wise maximum of ``values`` over ranks.

        With ``wait=False`` it returns a handle at once: ``handle.is_completed()``
        says when every rank has contributed and ``handle.result()`` gives the
        list (waiting if needed), so rank 0 can keep reporting meanwhile.
        """
        handle = _MaxHandle(self._tensor(values) if self.world > 1 else torch.tensor(list(values)), self.world)
        return handle.result() if wait else handle


class _MaxHandle:
    def __init__(self, tensor: torch.Tensor, world: int) -> None:
        self.tensor = tensor
        self.work = torch.distributed.all_reduce(tensor, torch.distributed.ReduceOp.MAX,
                                                 async_op=True) if world > 1 else None

    def is_completed(self) -> bool:
        return self.work is None or self.work.is_completed()

    def result(self) -> list[int]:
        if self.work is not None:
            self.work.wait()
        return [int(v) for v in self.tensor.cpu().tolist()]


def setup(device: str = "auto") -> Ranks:
    """This process's :class:`Ranks`, joining torchrun's process group.

    Parameters
    ----------
    device : str
        ``auto`` (``cuda:LOCAL_RANK`` where CUDA exists, else the CPU),
        ``cpu``, ``cuda`` (``cuda:LOCAL_RANK``), ``cuda:N`` (single process
        only) or ``mps``.

    Raises
    ------
    ValueError
        For a bad device (see :func:`resolve_device`) or an incomplete
        torchrun environment.
    """
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    try:
        world = int(env["WORLD_SIZE"] or 1)
        rank = int(env["RANK"] or 0)
        local = int(env["LOCAL_RANK"] or 0)
    except ValueError:
        raise ValueError(f"torchrun's environment is not numbers: {env}; start the run with torchrun") from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise ValueError(f"torchrun's environment is inconsistent: {env}; start the run with torchrun")
    dev = resolve_device(device, local, world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        if dev.type == "mps":
            raise ValueError("--device mps cannot run under torchrun; use cpu or cuda")
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Ranks(rank, world, local, dev)


def teardown() -> None:
    """Leave the process group (a no-op without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
