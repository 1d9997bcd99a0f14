"""attnmeta adapt / predict / explain / export from the command line, and the ONNX graph's
probabilities against PyTorch's for every kind of learner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from attnmeta.cli import main
from attnmeta.fewshot import FewShotClassifier
from attnmeta.fewshot.export import onnx_probabilities
from attnmeta.runs.episodic import train_run
from support import make_image_folder, one_line_error, tiny_config

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def trained(root: Path, images: Path, learner: str = "protonet", norm: str = "running",
            **fields) -> Path:
    config = tiny_config(images, learner, steps=2, **fields)
    config.model.norm, config.train.eval_every = norm, 0
    run = root / f"run-{learner}-{norm}"
    train_run(config, run, progress=False, will_evaluate=False)
    return run


def invoke(*args) -> str:
    outcome = CliRunner().invoke(main, [str(a) for a in args])
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout


def test_adapt_predict_explain_export_from_the_command_line(tmp_path, images):
    run = trained(tmp_path, images, "matching")
    model_dir = tmp_path / "model"
    out = invoke("adapt", run, "--support", images / "test", "--out", model_dir, "--no-progress")
    assert "to 6 classes from 36 examples" in out and model_dir.is_dir()

    queries = sorted((images / "val" / "class_03").glob("*.png"))
    table = invoke("predict", model_dir, *queries[:2])
    assert table.splitlines()[0].split()[:3] == ["input", "class", "probability"]
    lines = invoke("predict", model_dir, images / "val" / "class_03", "--json", "--top-k", "2")
    records = [json.loads(line) for line in lines.splitlines()]
    expected = FewShotClassifier.load(model_dir).predict(queries)
    assert [r["label"] for r in records] == expected
    assert all(len(r["top_k"]) == 2 and r["top_k"][0][0] == r["label"] for r in records)
    assert all(abs(r["top_k"][0][1] - r["probability"]) < 1e-12 for r in records)
    rejected = invoke("predict", model_dir, queries[0], "--json", "--reject-below", "1")
    assert json.loads(rejected)["label"] is None

    png = tmp_path / "why.png"
    assert "drew query_support" in invoke("explain", model_dir, queries[0], "--out", png)
    assert Image.open(png).format == "PNG"
    one_line_error(["explain", model_dir, queries[0], "--out", png], "exists")

    onnx_file = tmp_path / "model.onnx"
    out = invoke("export", model_dir, "--onnx", onnx_file)
    assert "onnxruntime matches PyTorch" in out
    model = FewShotClassifier.load(model_dir)
    query_x, _ = model.query_inputs(queries)
    torch.testing.assert_close(onnx_probabilities(onnx_file, query_x), model.predict_proba(queries),
                               rtol=0, atol=1e-5)


def test_command_line_bad_input_is_one_line(tmp_path, images):
    run = trained(tmp_path, images, "protonet")
    model_dir = tmp_path / "model"
    invoke("adapt", run, "--support", images / "test", "--out", model_dir, "--no-progress")
    query = next((images / "val" / "class_00").glob("*.png"))
    one_line_error(["predict", model_dir, query, "--top-k", "7"],
                   "--top-k 7: expected 1 to 6, the number of fitted classes")
    one_line_error(["predict", tmp_path / "nothing", query], "does not exist")
    one_line_error(["predict", run, query], "is not an adapted model")
    sentences = tmp_path / "s.txt"
    sentences.write_text("book a flight\n")
    one_line_error(["predict", model_dir, sentences], "is a text file, but the model reads images")
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "a" / "0.png").write_bytes(query.read_bytes())
    one_line_error(["adapt", run, "--support", tmp_path / "one", "--out", tmp_path / "m2"],
                   "one class ('a')")
    assert not (tmp_path / "m2").exists()  # nothing written
    one_line_error(["adapt", run, "--support", images / "test", "--out", model_dir],
                   "already holds an adapted model")
    oversized = tmp_path / "big.png"
    Image.new("L", (14000, 14000)).save(oversized)  # 196 M pixels: over PIL's bomb limit
    one_line_error(["predict", model_dir, oversized], "too large")


def test_adapt_in_bfloat16_keeps_the_precision_and_refuses_it_for_maml(tmp_path, images):
    run = trained(tmp_path, images, "protonet")
    model_dir = tmp_path / "model"
    invoke("adapt", run, "--support", images / "test", "--out", model_dir, "--precision",
           "bfloat16", "--no-progress")
    assert json.loads((model_dir / "model.json").read_text())["precision"] == "bfloat16"
    query = next((images / "val" / "class_00").glob("*.png"))
    label = json.loads(invoke("predict", model_dir, query, "--json"))["label"]
    assert label == FewShotClassifier.load(model_dir).predict([query])[0]
    maml = trained(tmp_path, images, "maml", "batch")
    one_line_error(["adapt", maml, "--support", images / "test", "--out", tmp_path / "m2",
                    "--precision", "bfloat16"], "precision='bfloat16': expected 'float32' for MAML")
    assert not (tmp_path / "m2").exists()


def test_serve_refuses_a_folder_that_is_neither_run_nor_model(tmp_path):
    pytest.importorskip("fastapi")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    one_line_error(["serve", tmp_path / "mine", "--port", "0"], "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_python_dash_m_knows_every_command():
    """``python -m attnmeta.cli`` (what torchrun and benchmarks/load.py run) registers every
    command before it dispatches."""
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "attnmeta.cli", "--help"], check=True,
                            capture_output=True, text=True).stdout
    assert all(f"  {name} " in listed for name in main.commands), listed
