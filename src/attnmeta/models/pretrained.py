"""Pretrained weights from a local file into a backbone (nothing is downloaded).

A file is a safetensors file or a torch ``state_dict`` (``.pth`` / ``.pt`` / ``.bin``, read
with ``weights_only=True``, so it runs no code; a training checkpoint holding the weights
under ``"state_dict"`` or ``"model"`` is read there). Loading is strict but for the keys
that neither side is expected to share: a backbone's classification ``head.*`` (sized
for the run's ``n_way``) and its ``input_norm.*`` constants. A backbone whose weights live
in a part of it (timm's model inside :class:`~attnmeta.models.timm_backbone.TimmBackbone`)
says so with a ``pretrained_parts()`` method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from attnmeta.errors import InputError
from attnmeta.models.capabilities import has_pretrained_parts

__all__ = ["FREE_KEYS", "read_state_dict", "state_mismatch", "load_pretrained"]

FREE_KEYS = ("head.", "input_norm.")  # a backbone's own, never part of pretrained weights


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of the weights file ``path``, by name; a one-line ``ValueError`` or
    ``FileNotFoundError`` naming the file when it is absent or holds no state dict."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"weights file {path} {what}: expected a safetensors or torch "
                                "state_dict file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # each reader has its own errors; all mean "not weights"
        detail = " ".join(str(error).split())[:200]
        raise InputError(f"weights file {path} cannot be read as a "
                         f"{'safetensors' if path.suffix == '.safetensors' else 'torch'} "
                         f"state dict ({type(error).__name__}: {detail})") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise InputError(f"weights file {path} holds a {type(state).__name__}, not a state "
                         "dict: expected a mapping of parameter names to tensors")
    return dict(state)


def state_mismatch(own: Mapping[str, Tensor], state: Mapping[str, Tensor],
                   free: tuple[str, ...] = FREE_KEYS) -> str:
    """What keeps ``state`` from loading into a model whose state dict is ``own`` (keys
    starting with ``free`` aside; a missing batch-norm step counter is no loss), or ''."""
    missing = sorted(k for k in own if k not in state and not k.startswith(free)
                     and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own and not k.startswith(free))
    shapes = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    return "; ".join(part for part in (
        f"missing {missing[:3]}" if missing else "",
        f"unexpected {unexpected[:3]}" if unexpected else "",
        "shape differs for " + ", ".join(f"{k} ({list(state[k].shape)} there, "
                                         f"{list(own[k].shape)} here)" for k in shapes[:2])
        if shapes else "") if part)


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """``model`` with the weights of file ``path`` loaded (into ``model.pretrained_parts()``'s
    module where its class declares that capability, with that method's free key prefixes); a one-line
    ``ValueError`` naming the file and the keys when they do not fit."""
    target, free = (model.pretrained_parts() if has_pretrained_parts(model)
                    else (model, FREE_KEYS))
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(free)}
    if problem := state_mismatch(target.state_dict(), state, free):
        raise InputError(f"weights file {path} does not fit the {type(model).__name__} "
                         f"backbone: {problem}")
    target.load_state_dict(state, strict=False)
    return model
