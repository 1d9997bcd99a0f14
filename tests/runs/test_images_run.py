"""Real images and real backbones from a config: RGB image folders, ImageNet normalisation
inside the model, flip-and-crop augmentation of training episodes only, ResNet-12, and
pretrained weights from a local file; every bad value refused in one ``Error:`` line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from attnmeta.runs.build import build_backbone, build_learner, make_episodes, training_episodes
from attnmeta.runs.config import ConfigError, config_from_dict, config_to_dict, load_config
from attnmeta.runs.pretrain import class_batches
from attnmeta.runs.episodic import evaluate_checkpoint, load_run, train_run
from attnmeta.tasks import load_image_folder
from attnmeta.tasks.augment import AUGMENTATIONS, AugmentedEpisodes
from support import make_image_folder, one_line_error, tiny_config, write_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def rgb_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("rgb"), size=32, channels=3)


def rgb_config(root: Path, steps: int = 2, **data):
    """tiny_config's protonet as a small ResNet-12 on 32×32 RGB images, normalised and
    augmented, checked as a config file would be."""
    values = config_to_dict(tiny_config(root, "protonet", steps=steps))
    values["data"].update(image_size=32, channels=3, normalize="imagenet", augment="flip_crop",
                          **data)
    values["model"].update(backbone="resnet12", hidden=8)
    return config_from_dict(values)


def test_resnet12_protonet_on_rgb_images_trains_with_augmentation_and_evaluates(
        tmp_path, rgb_root, monkeypatch):
    calls, flip_crop = [], AUGMENTATIONS["flip_crop"]

    def counted(images, generator):
        calls.append(images.shape)
        return flip_crop(images, generator)

    monkeypatch.setitem(AUGMENTATIONS, "flip_crop", counted)
    config = rgb_config(rgb_root)
    config.train.eval_every = 1  # evaluation after each step: never augmented
    result = train_run(config, tmp_path / "run", progress=False)
    assert result.steps == 2
    # one call per training episode (2 steps x meta_batch 2), each over support and query
    assert calls == [torch.Size([3 * (1 + 2), 3, 32, 32])] * 4
    accuracy = evaluate_checkpoint(tmp_path / "run", episodes=4).accuracy
    assert 0 <= accuracy <= 1 and len(calls) == 4
    encoder = load_run(tmp_path / "run").learner.encoder
    assert encoder.features[0].conv1.in_channels == 3 and encoder.feature_dim == 80
    assert torch.allclose(encoder.input_norm.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert "input_norm.std" in encoder.state_dict()  # saved with the model


class Killed(Exception):
    pass


def test_an_augmented_run_resumes_to_the_same_weights(tmp_path, rgb_root):
    config = rgb_config(rgb_root, steps=4)
    config.train.checkpoint_every = 2
    train_run(config, tmp_path / "straight", progress=False)

    def kill_after_step_3(step: int) -> None:
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_run(config, tmp_path / "killed", progress=False, on_step_end=kill_after_step_3)
    assert train_run(config, tmp_path / "killed", resume=True,
                     progress=False).resumed_from == 2
    weights = [load_file(max((tmp_path / run / "checkpoints").glob("*.safetensors")))
               for run in ("straight", "killed")]
    for key in weights[0]:
        assert np.array_equal(weights[0][key].numpy(), weights[1][key].numpy()), key


def test_only_training_episodes_are_augmented_and_none_leaves_them(rgb_root):
    config = rgb_config(rgb_root)
    split = load_image_folder(rgb_root, "train", image_size=32, channels=3)
    assert split.images.shape[1:] == (3, 32, 32)
    episodes = make_episodes(split, config.data.train, 4, config.seed)
    augmented = training_episodes(config, episodes)
    assert isinstance(augmented, AugmentedEpisodes)
    assert torch.equal(augmented[1].query_y, episodes[1].query_y)
    assert not torch.equal(augmented[1].query_x, episodes[1].query_x)
    config.data.augment = "none"
    assert training_episodes(config, episodes) is episodes


def test_pretraining_batches_are_augmented_by_seed_and_step(rgb_root):
    split = load_image_folder(rgb_root, "train", image_size=32, channels=3)
    plain = list(class_batches(split, 8, 0, 3, 0, 2))
    once = list(class_batches(split, 8, 0, 3, 0, 2, "flip_crop"))
    later = list(class_batches(split, 8, 0, 3, 1, 2, "flip_crop"))  # a resume at step 1
    assert torch.equal(once[1].y, plain[1].y) and not torch.equal(once[1].x, plain[1].x)
    assert torch.equal(later[0].x, once[1].x)


def test_a_training_run_reads_pretrained_path_and_a_resume_or_eval_does_not(tmp_path, rgb_root):
    config = rgb_config(rgb_root, steps=2)
    weights = tmp_path / "start.safetensors"
    save_file(build_backbone(config, 0).state_dict(), weights)
    config.model.pretrained_path = str(weights)
    train_run(config, tmp_path / "run", progress=False, will_evaluate=False)
    weights.unlink()
    config.train.steps = 3
    assert train_run(config, tmp_path / "run", resume=True, progress=False,
                     will_evaluate=False).steps == 3
    assert 0 <= evaluate_checkpoint(tmp_path / "run", episodes=2).accuracy <= 1
    with pytest.raises(ConfigError, match="model.pretrained_path"):
        train_run(config, tmp_path / "fresh", progress=False)


@pytest.fixture
def config_file(tmp_path, rgb_root) -> Path:
    config = tiny_config(rgb_root, "protonet")
    config.data.channels = 3
    return write_config(tmp_path / "tiny.yaml", config)


@pytest.mark.parametrize("overrides, expected", [
    (["data.channels=2"], ["'data.channels' is 2", "expected one of 1, 3"]),
    (["data.normalize=zca"], ["'data.normalize' is 'zca'", "'imagenet'"]),
    (["data.augment=mixup"], ["'data.augment' is 'mixup'", "'flip_crop'"]),
    (["data.image_size=8", "model.backbone=resnet12"], ["'data.image_size' is 8", ">= 16"]),
    (["model.backbone=timm"], ["'model.timm_name' is None", "a timm model name"]),
    (["model.backbone=timm", "model.timm_name=hf-hub:timm/resnet18"],
     ["'model.timm_name'", "plain name"]),
    (["model.pretrained_path=/no/such/weights.pth"],
     ["'model.pretrained_path' is '/no/such/weights.pth'", "does not exist"]),
    (["model.pretrained_path=w.pth", "model.init=runs/pretrain"],
     ["'model.pretrained_path'", "null with model.init"]),
    (["model.init=runs/pretrain", "model.freeze=true", "data.augment=flip_crop"],
     ["'data.augment' is 'flip_crop'", "model.freeze"]),
    (["data.dataset=omniglot", "data.channels=3"],
     ["'data.channels' is 3", "expected 1 for data.dataset='omniglot'", "grey"]),
])
def test_bad_values_of_the_new_keys_are_one_error_line(tmp_path, config_file, overrides,
                                                        expected):
    one_line_error(["train", config_file, *overrides, "--out", tmp_path / "out",
                    "--no-progress"], *expected)


def test_timm_without_timm_says_how_to_install(tmp_path, config_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails, as when absent
    one_line_error(["train", config_file, "model.backbone=timm", "model.timm_name=resnet18",
                    "--out", tmp_path / "out", "--no-progress"],
                   "'model.backbone' is 'timm'", "pip install 'attnmeta[timm]'")


def test_text_data_sets_refuse_image_only_keys():
    for key, value in (("normalize", "imagenet"), ("augment", "flip_crop")):
        config = config_from_dict({"data": {"dataset": "clinc150", key: value},
                                   "model": {"backbone": "text_transformer"}})
        with pytest.raises(ConfigError, match=f"'data.{key}' is '{value}': expected"):
            if key == "normalize":
                build_backbone(config, 0)
            else:
                training_episodes(config, [])


def test_the_shipped_image_config_is_valid():
    config = load_config(CONFIGS / "images" / "protonet_resnet12_folder.yaml")
    assert config.name == "protonet_resnet12_folder"
    data, model = config.data, config.model
    assert (data.dataset, data.channels, data.image_size) == ("image_folder", 3, 84)
    assert (data.normalize, data.augment, model.backbone) == ("imagenet", "flip_crop", "resnet12")
    encoder = build_learner(config).encoder
    assert sum(p.numel() for p in encoder.parameters()) == 12_424_320  # ResNet-12, no head
    assert encoder(torch.rand(2, 3, 84, 84)).shape == (2, 640)
