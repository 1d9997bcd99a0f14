"""A built-in image encoder's forward pass run by ONNX Runtime, where it is installed.

ONNX Runtime embeds a 224 px photo with EfficientNet-Lite0 faster than PyTorch on the CPU
(``benchmarks/results/encoder_speed.md``): depthwise convolutions are where PyTorch's CPU
kernels are slow. So a classifier over a built-in encoder that declares ``onnx``
(:class:`attnmeta.fewshot.encoders.EncoderEntry`) embeds through it; everything else (the
prototypes, the explanation's feature map, training, export) stays in PyTorch. The graph is
exported once from the folded encoder and kept in ``$XDG_CACHE_HOME/attnmeta/onnx``
(``~/.cache`` by default; ``ATTNMETA_CACHE`` overrides), named by the weights' sha256 and the
torch version, so later processes only load it (far quicker than exporting:
``benchmarks/results/design_timings.md``). The features equal PyTorch's to about 1e-5
(tested).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from attnmeta.files import atomic_write_bytes

__all__ = ["OnnxRuntimeEncoder", "onnx_runtime_encoder", "cache_folder"]


def cache_folder() -> Path:
    """Where exported encoder graphs are kept."""
    if root := os.environ.get("ATTNMETA_CACHE"):
        return Path(root) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnmeta" / "onnx"


class OnnxRuntimeEncoder(nn.Module):
    """``x [B, C, H, W]`` float32 -> features ``[B, D]`` through an ONNX Runtime session
    (inference only: no gradient flows through it)."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: Tensor) -> Tensor:
        inputs = np.ascontiguousarray(x.detach().to(torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {"x": inputs})[0])


def onnx_runtime_encoder(encoder: nn.Module, key: str, input_shape: tuple[int, ...]
                         ) -> OnnxRuntimeEncoder | None:
    """``encoder`` (in eval mode, its batch norms folded) as an :class:`OnnxRuntimeEncoder`
    for inputs ``[B, *input_shape]``, its graph read from the cache under ``key`` or exported
    there first; None where onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    path = cache_folder() / f"{key}-torch{torch.__version__.split('+')[0]}.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # its threads would otherwise spin after each run, taking the cores from PyTorch's ops
    # that follow (the prototypes after it ran several times slower)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if path.is_file():
        try:
            return OnnxRuntimeEncoder(onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]))
        except Exception:  # noqa: BLE001 - a damaged cache file is exported again below
            pass
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's notes on the shapes it fixes (224 px)
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder.eval(), (torch.zeros(1, *input_shape),), buffer,
                          input_names=["x"], output_names=["features"],
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:  # a read-only cache costs the export again next time, nothing else
        pass
    return OnnxRuntimeEncoder(onnxruntime.InferenceSession(
        buffer.getvalue(), options, providers=["CPUExecutionProvider"]))
