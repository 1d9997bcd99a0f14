"""Meta-training across processes and machines with ``torch.distributed``.

Each rank takes a contiguous shard of every meta-batch's tasks, computes the meta-gradient
of its shard's mean loss, and the ranks average their gradients with one all-reduce
(gloo on CPU, NCCL on GPU). With equal shards that average is exactly the meta-gradient
of the whole meta-batch, so N ranks reproduce one process up to summation order.

An all-reduce of meta-gradients rather than ``DistributedDataParallel``: DDP's reducer
hooks fire during ``backward`` and do not support the double backward of second-order
MAML, and a meta-learner's ``training_step`` is not its ``forward``.

Launch with ``torchrun`` (it sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)::

    torchrun --nproc_per_node=2 -m attnmeta.cli train configs/omniglot/maml_5w1s.yaml
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from attnmeta.errors import ConfigError

__all__ = ["DistributedContext", "init_from_environment", "average_gradients",
           "broadcast_parameters", "shard_range", "any_rank"]


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_environment(backend: str | None = None) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size())


def shard_range(meta_batch: int, context: DistributedContext) -> tuple[int, int]:
    """This rank's ``[start, stop)`` slice of a meta-batch's task positions."""
    if meta_batch % context.world_size:
        raise ConfigError(f"train.meta_batch={meta_batch} is not divisible by the "
                          f"{context.world_size} processes: expected equal shards")
    size = meta_batch // context.world_size
    return context.rank * size, (context.rank + 1) * size


def broadcast_parameters(module: nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module) -> None:
    """Average ``.grad`` over ranks with one flat all-reduce (missing grads count as 0)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        count = p.numel()
        p.grad = flat[offset: offset + count].view_as(p).clone()
        offset += count


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any: keeps stop decisions in lock-step."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
