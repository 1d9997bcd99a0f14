"""How a learner's forward passes run: their precision (training's ``train.precision`` and
a fitted classifier's ``attnmeta adapt --precision``), the one rule of which learners may
run in bfloat16, and the copy a fitted classifier makes for repeated inference."""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING, ContextManager

import torch
from torch import nn

from attnmeta.errors import ConfigError
from attnmeta.norm import fold_batch_norms

if TYPE_CHECKING:
    from attnmeta.learners.base import MetaLearner

__all__ = ["PRECISIONS", "forward_precision", "check_precision", "inference_copy"]

# The precisions of a learner's forward passes, in training (train.precision) and in a
# fitted classifier (attnmeta adapt --precision). bfloat16 runs them under torch.autocast:
# matrix products and convolutions in bfloat16 (AMX / AVX-512 BF16 kernels on CPUs that have
# them; Conv4 pretraining's speed-up: benchmarks/results/paths.md), weights, gradients
# and the optimiser in float32.
PRECISIONS = ("float32", "bfloat16")


def _check_name(precision: str, key: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"{key}={precision!r}: expected one of {', '.join(PRECISIONS)}")


def forward_precision(learner: nn.Module, precision: str = "float32") -> ContextManager:
    """The context a learner's forward runs in: nothing for float32, ``torch.autocast`` to
    bfloat16 on the learner's device for bfloat16. Autocast state is per thread: worker
    threads enter it themselves. A training backward runs outside it, as autocast asks."""
    _check_name(precision, "precision")
    if precision == "float32":
        return contextlib.nullcontext()
    device = next((p.device.type for p in learner.parameters()), "cpu")
    return torch.autocast(device, dtype=torch.bfloat16)


def check_precision(learner: MetaLearner, precision: str, key: str = "precision") -> None:
    """The one rule of which learners run in which precision, for training and prediction:
    a name of :data:`PRECISIONS`, and float32 for learners that adapt by gradient steps.
    Raises ``ValueError`` naming ``key`` (the config key or option the value came from).

    Why float32 for those: measured (benchmarks/results/speed.md), MAML's bfloat16
    meta-gradient is 2.4-60% off the float32 one, for little or no speed-up on
    Omniglot-sized tasks; rounding compounds through the differentiated support-set steps."""
    _check_name(precision, key)
    if precision != "float32" and learner.adapts_by_gradient:
        raise ConfigError(f"{key}={precision!r}: expected 'float32' for "
                          f"{learner.display_name}, which adapts "
                          "by gradient steps on the support set (bfloat16 rounding compounds "
                          "through them)")


def inference_copy(learner: MetaLearner, precision: str = "float32") -> nn.Module:
    """What a fitted classifier runs to fit, predict and explain: a copy of ``learner``
    made for repeated inference, the same function to round-off.

    - batch norms with running statistics folded into the convolution before them
      (:func:`attnmeta.norm.fold_batch_norms`), a memory-bound pass fewer;
    - convolution weights in channels-last layout, which oneDNN prefers: the activations
      follow it (and :func:`attnmeta.pooling.max_pool2d` keeps it);
    - for ``"bfloat16"``, convolution and linear weights held in bfloat16: autocast casts
      exactly those on every call (its cast cache lasts one autocast block), so casting
      them once saves the copy each call (ResNet-12's 12.4M weights, every query).

    Each step makes one query faster for ResNet-12 and Conv4 (timings:
    ``benchmarks/results/design_timings.md``; the classifier rows of
    ``benchmarks/results/paths_amd_epyc.md``). Learners that adapt by gradient steps get
    themselves back: their inner loop updates the very weights folding would replace."""
    if learner.adapts_by_gradient:
        return learner
    fast = copy.deepcopy(learner).eval()
    fold_batch_norms(fast)
    for module in fast.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
        if precision == "bfloat16" and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.to(torch.bfloat16)
    return fast
