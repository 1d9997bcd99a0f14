"""Pretrained encoders as a run's starting point, and cached frozen features.

``model.init: RUN_DIR`` starts a run's backbone from the encoder of a pretrain run (its
newest valid checkpoint, :func:`load_init`); the checkpoint and the sha256 of the encoder's
weights are recorded in every checkpoint of the new run, so a resume with another init is
refused. With ``model.freeze: true`` each split is embedded once by the frozen encoder
(:func:`cached_features`) and the learner's head trains on those ``[N, D]`` features: the
CAML recipe (Fifty et al., ICLR 2024). The features are cached in ``<run>/features/``,
keyed by the sha256 of the encoder's weights and of its structure (its modules' repr, where
a backbone names e.g. the block whose map it hands over as tokens) and a fingerprint of the
split's data, so a change of any computes them again; a run beside it (same parent folder)
that cached the same encoder's features of the same data lends them (read, then copied
into this run's own folder): Omniglot's 88k training images take about 2 minutes to embed
on one thread.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from attnmeta.checkpoint import (CheckpointError, load_checkpoint)
from attnmeta.errors import AttnmetaError
from attnmeta.files import atomic_write
from attnmeta.runs.build import build_classifier
from attnmeta.runs.folder import read_run
from attnmeta.runs.config import ConfigError
from attnmeta.tasks import LabelledSplit

__all__ = ["FeatureSplit", "InitEncoder", "encoder_sha256", "split_fingerprint", "embed_items",
           "cached_features", "load_init", "model_input", "model_items"]

logger = logging.getLogger(__name__)


@dataclass
class FeatureSplit:
    """A :class:`~attnmeta.tasks.LabelledSplit` whose items are features ``[N, D]``."""

    features: Tensor
    labels: Tensor
    class_names: list[str]
    split: str = ""
    # the split the features were computed from: what it declares about its classes (an
    # Omniglot split's alphabets) holds for its features too
    source: Any = None

    @property
    def items(self) -> Tensor:
        return self.features

    @property
    def class_alphabets(self) -> list[str]:
        """The source split's alphabets (a :class:`~attnmeta.tasks.splits.GroupedSplit`'s;
        read only where its data set declares them)."""
        return self.source.class_alphabets


def _digest_tensors(named: list[tuple[str, Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in named:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def encoder_sha256(encoder: nn.Module) -> str:
    """sha256 of an encoder's weights and buffers (names, dtypes, shapes and values)."""
    return _digest_tensors(sorted(encoder.state_dict().items()))


def split_fingerprint(split: LabelledSplit) -> str:
    """sha256 of a split's examples, labels and class names."""
    names = torch.frombuffer(bytearray("\n".join(split.class_names).encode() or b"-"),
                             dtype=torch.uint8)
    return _digest_tensors([("items", split.items), ("labels", split.labels), ("names", names)])


def embed_items(encoder: nn.Module, items: Tensor, batch_size: int = 512) -> Tensor:
    """``encoder(items)`` in eval mode, without gradient, ``batch_size`` at a time."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            return torch.cat([encoder(items[start:start + batch_size])
                              for start in range(0, items.shape[0], batch_size)])
    finally:
        encoder.train(was_training)


def _read_cached(path: Path, keys: dict[str, str], count: int) -> Tensor | None:
    try:
        with safe_open(path, "pt") as handle:
            meta = handle.metadata() or {}
            features = handle.get_tensor("features")
    except Exception:  # missing, truncated or not safetensors: compute again
        return None
    if any(meta.get(name) != key for name, key in keys.items()) \
            or features.ndim != 2 or features.shape[0] != count:
        return None
    return features


def cached_features(encoder: nn.Module, split: LabelledSplit, cache_dir: Path | None,
                    batch_size: int = 512, also_read: Sequence[Path] = ()) -> FeatureSplit:
    """``split`` embedded by the frozen ``encoder``: read from ``cache_dir`` when a file of
    the same encoder weights, structure and data is there, else from the first of the folders
    ``also_read`` (other runs' caches: only read, never written) that has one, else
    computed; what was not in ``cache_dir`` is written there (a failed write is a warning;
    other splits' files of that name are replaced)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", split.split or "split")
    # the weights, and what the modules declare of themselves in their repr (e.g. which
    # block's map a backbone hands over as tokens: the same weights, other features)
    keys = {"encoder_sha256": encoder_sha256(encoder),
            "encoder_structure": hashlib.sha256(repr(encoder).encode()).hexdigest(),
            "data_fingerprint": split_fingerprint(split)}
    count = split.items.shape[0]
    file_name = (f"{name}-{keys['encoder_sha256'][:16]}-{keys['encoder_structure'][:8]}-"
                 f"{keys['data_fingerprint'][:16]}.safetensors")
    path = None if cache_dir is None else Path(cache_dir) / file_name
    features = None if path is None else _read_cached(path, keys, count)
    if features is not None:
        return FeatureSplit(features, split.labels, list(split.class_names), name, split)
    for folder in also_read:  # the full keys and the count are checked, not just the name
        features = _read_cached(Path(folder) / file_name, keys, count)
        if features is not None:
            logger.info("features of %s reused from %s", name, folder)
            break
    if features is None:
        features = embed_items(encoder, split.items, batch_size).flatten(1).contiguous()
    if path is not None:
        try:
            with atomic_write(path) as temp:
                save_file({"features": features}, temp, metadata=keys)
            for stale in path.parent.glob(f"{name}-*.safetensors"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("could not cache features in %s (%s); they are kept in memory",
                           path, error.strerror or error)
    return FeatureSplit(features, split.labels, list(split.class_names), name, split)


@dataclass
class InitEncoder:
    """The encoder of a pretrain run: its weights, and where they came from."""

    state: dict[str, Tensor]
    checkpoint: str
    sha256: str

    def inputs(self) -> dict[str, Any]:
        """What a run records of its init (its checkpoints' ``inputs``)."""
        return {"init_checkpoint": self.checkpoint, "init_encoder_sha256": self.sha256}


def load_init(init: str) -> InitEncoder:
    """The encoder of the pretrain run (or checkpoint) ``init`` (``model.init``), from its
    newest valid checkpoint; a ConfigError naming the key when it is not one."""
    where = f"config key 'model.init' is {init!r}"
    try:
        json_path, record, pretrain = read_run(Path(init), "pretrain")
        try:  # the record's own field: a missing or odd one is the run's fault, not a bug
            num_classes = int((record.get("inputs") or {})["num_classes"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{json_path} lacks a whole inputs.num_classes ({error!r}): "
                                  "expected the record a pretrain run writes") from None
        learner = build_classifier(pretrain, num_classes)
        load_checkpoint(json_path, learner)
    except AttnmetaError as error:  # only what the user can fix: a bug keeps its traceback
        raise ConfigError(f"{where}: {' '.join(str(error).split())}") from None
    encoder = learner.encoder
    return InitEncoder({k: v.clone() for k, v in encoder.state_dict().items()}, str(json_path),
                       encoder_sha256(encoder))


def model_input(config: Any, learner: nn.Module, split: LabelledSplit, run_dir: Path | None
                ) -> LabelledSplit:
    """What the learner reads of ``split``: the split itself, or with ``model.freeze`` its
    features by the learner's frozen encoder (cached in ``<run_dir>/features``)."""
    if not config.model.freeze:
        return split
    if run_dir is None:
        return cached_features(learner.frozen_encoder, split, None)
    # runs beside this one (the same parent folder, e.g. runs/) often froze the same
    # encoder over the same data: their caches are read, matched by the full sha256s
    own = Path(run_dir) / "features"
    others = [folder for folder in sorted(Path(run_dir).parent.glob("*/features"))
              if folder.resolve() != own.resolve()]
    return cached_features(learner.frozen_encoder, split, own, also_read=others)


def model_items(config: Any, learner: nn.Module, items: Tensor) -> Tensor:
    """What the learner reads of raw ``items [M, ...]`` from outside the splits (CLINC150's
    out-of-scope utterances): the items, or with ``model.freeze`` their features ``[M, D]``
    by the learner's frozen encoder (not cached)."""
    if not config.model.freeze:
        return items
    return embed_items(learner.frozen_encoder, items).flatten(1)
