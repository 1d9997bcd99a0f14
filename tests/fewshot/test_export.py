"""attnmeta.fewshot.export: a fitted classifier as an ONNX graph whose probabilities equal
PyTorch's, for every kind of learner (the ``attnmeta export`` command: test_cli_and_export.py)."""

from __future__ import annotations

import pytest
import torch

from attnmeta.fewshot import FewShotClassifier
from attnmeta.fewshot.export import OPSET, export_onnx, onnx_probabilities
from test_cli_and_export import images, trained  # noqa: F401  (a fixture and a helper)

pytest.importorskip("onnxruntime")


def test_an_existing_file_or_a_name_without_onnx_is_refused_before_exporting(tmp_path):
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"m\.onnx exists: expected a new file name"):
        export_onnx(None, existing)
    assert existing.read_bytes() == b"mine"
    with pytest.raises(ValueError, match=r"m\.txt: expected a file name ending in \.onnx"):
        export_onnx(None, tmp_path / "m.txt")
    assert not (tmp_path / "m.txt").exists()


def test_the_result_names_the_graphs_inputs_classes_and_opset(tmp_path, images):  # noqa: F811
    run = trained(tmp_path, images)
    support = [(p, p.parent.name) for p in sorted((images / "test").glob("class_0[01]/*.png"))]
    model = FewShotClassifier.from_run(run).fit(support)
    result = export_onnx(model, tmp_path / "m.onnx", check=False)
    assert result == {"path": str(tmp_path / "m.onnx"), "inputs": [1, 16, 16],
                      "classes": ["class_00", "class_01"], "opset": OPSET}
    again = export_onnx(model, tmp_path / "m.onnx", overwrite=True)
    assert again["max_abs_difference"] < 1e-5


ONNX_LEARNERS = [("protonet", "running", {}), ("protonet", "batch", {}), ("maml", "batch", {}),
                 ("matching", "running", {"fce": True}), ("feat", "running", {}),
                 ("incontext", "batch", {}), ("reptile", "batch", {})]


@pytest.mark.parametrize("learner,norm,fields", ONNX_LEARNERS,
                         ids=[f"{n}-{norm}" + ("-fce" if f else "") for n, norm, f in ONNX_LEARNERS])
def test_onnx_probabilities_equal_pytorch(tmp_path, images, learner, norm, fields):  # noqa: F811
    run = trained(tmp_path, images, learner, norm, **fields)
    support = [(p, p.parent.name) for p in sorted((images / "test").glob("class_0[012]/*.png"))]
    model = FewShotClassifier.from_run(run).fit(support)
    result = export_onnx(model, tmp_path / "m.onnx")
    assert result["max_abs_difference"] < 1e-5
    queries = sorted((images / "val").glob("class_0[0-4]/*.png"))[:7]  # another batch size
    query_x, _ = model.query_inputs(queries)
    torch.testing.assert_close(onnx_probabilities(tmp_path / "m.onnx", query_x),
                               model.predict_proba(queries), rtol=0, atol=1e-5)


