"""A fitted classifier as one ONNX graph, preprocessed queries ``[Q, ...]`` in,
probabilities ``[Q, N]`` out, checked against PyTorch with onnxruntime.

The fitted task (adapted weights, support embeddings or inputs) is folded into the graph as
constants, so the file alone classifies; the number of queries is a dynamic axis. Images
enter as the model reads them (``[Q, C, S, S]`` float32 in [0, 1], resized); text as token
ids ``[Q, L]`` (int64) from the run's tokenizer, saved beside the model.

Which exporter is decided here, from what the learner declares: a learner that adapts by
gradient predicts through ``torch.func.functional_call`` at its adapted weights, which the
TorchScript tracer refuses ("the stateless API can't be used with Jitted modules"), so it
goes through ``torch.export`` (``dynamo=True``, needs ``onnxscript``); the others read the
support set's class count from a tensor (``int(labels.max())``), which ``torch.export``
cannot trace, so they go through the tracer (``dynamo=False``). Both run under
``kernels.differentiable(export=True)``: plain-op batch norm and pooling, no fused kernel.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attnmeta import kernels
from attnmeta.errors import InputError, MissingDependencyError
from attnmeta.fewshot.classifier import FewShotClassifier
from attnmeta.files import atomic_write_bytes

__all__ = ["export_onnx", "onnx_probabilities", "OPSET"]

OPSET = 18  # the lowest opset torch 2.13's dynamo exporter writes without conversion


def _example_queries(model: FewShotClassifier, count: int = 2) -> Tensor:
    """``count`` queries of the model's input shape (repeats of its first support input)."""
    return model.support_x[:1].expand(count, *model.support_x.shape[1:]).clone()


def export_onnx(model: FewShotClassifier, path: str | Path, overwrite: bool = False,
                check: bool = True) -> dict[str, Any]:
    """Write ``model`` as ONNX to ``path`` (refused if the file exists, unless ``overwrite``);
    with ``check`` (onnxruntime installed), run both on the support inputs and return the
    largest absolute difference of their probabilities."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: expected a new file name (or --force to "
                              "replace it)")
    if path.suffix.lower() != ".onnx":
        raise InputError(f"--onnx {path}: expected a file name ending in .onnx")
    module = model.to_module().eval()
    buffer = io.BytesIO()
    by_export = model.learner.adapts_by_gradient
    axes: dict[str, Any] = (
        {"dynamic_shapes": ({0: torch.export.Dim("queries", min=1)},), "verbose": False}
        if by_export else
        {"dynamic_axes": {"query": {0: "queries"}, "probabilities": {0: "queries"}}})
    with warnings.catch_warnings(), torch.no_grad(), kernels.differentiable(export=True), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporters' notices are not the user's concern
        try:
            exported = torch.onnx.export(module, (_example_queries(model),),
                                         None if by_export else buffer, dynamo=by_export,
                                         input_names=["query"], output_names=["probabilities"],
                                         opset_version=OPSET, **axes)
        except ImportError as error:  # torch's exporters need the onnx extra's packages
            raise MissingDependencyError(f"export needs {error.name}: expected pip install "
                                         "'attnmeta[onnx]'") from error
    atomic_write_bytes(path, exported.model_proto.SerializeToString() if by_export
                       else buffer.getvalue())
    result: dict[str, Any] = {"path": str(path), "inputs": list(model.support_x.shape[1:]),
                              "classes": list(model.class_names), "opset": OPSET}
    if check:
        try:
            queries = model.support_x
            expected = module(queries)
            got = onnx_probabilities(path, queries)
            result["max_abs_difference"] = float((expected - got).abs().max())
        except ImportError:
            result["max_abs_difference"] = None
    return result


def onnx_probabilities(path: str | Path, queries: Tensor) -> Tensor:
    """Probabilities ``[Q, N]`` of an exported classifier on ``queries`` (onnxruntime)."""
    import onnxruntime  # optional: pip install 'attnmeta[onnx]'

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"query": queries.numpy()})
    return torch.from_numpy(output)
