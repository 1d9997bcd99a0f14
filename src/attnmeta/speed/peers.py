"""MAML meta-training steps written the way each peer library's own examples write them.

Every implementation is a :class:`MetaStep`: ``meta_gradient(batch)`` leaves the mean
meta-gradient of a meta-batch in ``model``'s ``.grad`` (one backward per task, as the
peers' Omniglot examples do, so each holds one task's graph at a time).
The peers get the textbook Conv4 (:func:`reference_conv4`); attnmeta runs its own
:class:`~attnmeta.models.Conv4`. Peers are imported lazily: a missing one is reported,
not fatal. Install notes: ``benchmarks/README.md``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attnmeta.tasks.episode import Episode

__all__ = ["MetaStep", "PeerUnavailable", "reference_conv4", "PEERS"]


class PeerUnavailable(RuntimeError):
    """A peer library is not installed (or does not import); the message says why."""


def reference_conv4(n_way: int, hidden: int = 64) -> nn.Sequential:
    """The Conv4 of MAML's Omniglot experiments as the peers' examples write it:
    4 × [conv 3×3, BatchNorm (batch statistics), ReLU, max-pool 2], then a linear head."""
    layers: list[nn.Module] = []
    channels = 1
    for _ in range(4):
        layers += [nn.Conv2d(channels, hidden, 3, padding=1),
                   nn.BatchNorm2d(hidden, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2)]
        channels = hidden
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(hidden, n_way))


@dataclass
class MetaStep:
    """``meta_gradient(batch)`` accumulates the meta-gradient into ``model``'s ``.grad``;
    ``serial_meta_gradient`` does the same on the calling thread only (for FLOP counting
    and profiling, which see one thread), if ``meta_gradient`` spreads work over threads."""

    name: str
    model: nn.Module
    meta_gradient: Callable[[Episode], None]
    note: str = ""
    serial_meta_gradient: Callable[[Episode], None] | None = None
    compiles: bool = False  # the first call compiles (timed apart; memory measured after it)

    def on_one_thread(self, batch: Episode) -> None:
        (self.serial_meta_gradient or self.meta_gradient)(batch)


def plain_loop(model: nn.Module, inner_lr: float, steps: int, first_order: bool) -> MetaStep:
    """What people write by hand: ``torch.autograd.grad(create_graph=True)`` per task."""
    names = [n for n, _ in model.named_parameters()]

    def meta_gradient(batch: Episode) -> None:
        for t in range(batch.num_tasks):
            task = batch.task(t)
            fast = list(model.parameters())
            for _ in range(steps):
                logits = functional_call(model, dict(zip(names, fast)), (task.support_x,))
                grads = torch.autograd.grad(F.cross_entropy(logits, task.support_y), fast,
                                            create_graph=not first_order)
                fast = [p - inner_lr * g for p, g in zip(fast, grads)]
            logits = functional_call(model, dict(zip(names, fast)), (task.query_x,))
            (F.cross_entropy(logits, task.query_y) / batch.num_tasks).backward()

    return MetaStep("plain autograd.grad loop", model, meta_gradient)


class _StandIn(types.ModuleType):
    """A module whose every attribute is an empty class: enough for ``import`` to succeed."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        stand_in = type(name, (), {"__init__": lambda self, *args, **kwargs: None})
        setattr(self, name, stand_in)
        return stand_in


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: set[str]) -> None:
        self.roots = roots

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def _import_learn2learn():
    """learn2learn's top-level import pulls in torchvision and gym (used only by its data
    sets and RL wrappers). There is no CPU torchvision wheel for torch 2.13, so stand-ins
    for whichever of the two is missing let ``learn2learn.algorithms`` import."""
    missing = set()
    for root in ("torchvision", "gym"):
        try:
            importlib.import_module(root)
        except ImportError:
            missing.add(root)
    finder = _StandInFinder(missing)
    if missing:
        sys.meta_path.append(finder)
    try:
        return importlib.import_module("learn2learn")
    except ImportError as error:
        raise PeerUnavailable(f"learn2learn does not import ({error})") from error
    finally:
        if missing:
            sys.meta_path.remove(finder)


def learn2learn_maml(model: nn.Module, inner_lr: float, steps: int, first_order: bool) -> MetaStep:
    l2l = _import_learn2learn()
    maml = l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)

    def meta_gradient(batch: Episode) -> None:
        for t in range(batch.num_tasks):
            task = batch.task(t)
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
            (F.cross_entropy(learner(task.query_x), task.query_y) / batch.num_tasks).backward()

    return MetaStep(f"learn2learn {l2l.__version__} MAML", model, meta_gradient)


def higher_maml(model: nn.Module, inner_lr: float, steps: int, first_order: bool) -> MetaStep:
    try:
        import higher
    except ImportError as error:
        raise PeerUnavailable(f"higher is not installed ({error})") from error
    inner_optimizer = torch.optim.SGD(model.parameters(), lr=inner_lr)
    params = list(model.parameters())

    def meta_gradient(batch: Episode) -> None:
        for t in range(batch.num_tasks):
            task = batch.task(t)
            with higher.innerloop_ctx(model, inner_optimizer, copy_initial_weights=False,
                                      track_higher_grads=not first_order) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fmodel(task.support_x), task.support_y))
                query_loss = F.cross_entropy(fmodel(task.query_x), task.query_y) / batch.num_tasks
                if not first_order:
                    query_loss.backward()
                    continue
                # Without higher-order tracking the fast weights are detached from the
                # model: their gradient has to be copied back by hand.
                grads = torch.autograd.grad(query_loss, list(fmodel.parameters()))
                for p, g in zip(params, grads):
                    p.grad = g if p.grad is None else p.grad + g

    version = getattr(higher, "__version__", "")
    return MetaStep(f"higher {version} innerloop_ctx".replace("  ", " "), model, meta_gradient)


def torchopt_maml(model: nn.Module, inner_lr: float, steps: int, first_order: bool) -> MetaStep:
    try:
        import torchopt
    except ImportError as error:
        raise PeerUnavailable(f"torchopt is not installed ({error})") from error
    if first_order:
        raise PeerUnavailable("torchopt's MetaSGD differentiates through the inner loop "
                              "(no first-order mode in its MAML example)")
    inner_optimizer = torchopt.MetaSGD(model, lr=inner_lr)

    def meta_gradient(batch: Episode) -> None:
        model_state = torchopt.extract_state_dict(model, by="reference", detach_buffers=True)
        optimizer_state = torchopt.extract_state_dict(inner_optimizer)
        for t in range(batch.num_tasks):
            task = batch.task(t)
            for _ in range(steps):
                inner_optimizer.step(F.cross_entropy(model(task.support_x), task.support_y))
            (F.cross_entropy(model(task.query_x), task.query_y) / batch.num_tasks).backward()
            torchopt.recover_state_dict(model, model_state)
            torchopt.recover_state_dict(inner_optimizer, optimizer_state)

    return MetaStep(f"torchopt {torchopt.__version__} MetaSGD", model, meta_gradient)


PEERS: dict[str, Callable[[nn.Module, float, int, bool], MetaStep]] = {
    "plain_loop": plain_loop,
    "learn2learn": learn2learn_maml,
    "higher": higher_maml,
    "torchopt": torchopt_maml,
}
