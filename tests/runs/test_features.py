"""attnmeta.runs.features: cached frozen features (keyed by the encoder's weights and the
data, lent by a run beside it) and ``model.init``'s encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnmeta.learners import ProtoNet
from attnmeta.models import Conv4, FeatureHead
from attnmeta.runs.build import make_episodes
from attnmeta.runs.config import ConfigError
from attnmeta.runs.features import cached_features, encoder_sha256, load_init
from attnmeta.tasks import collate_episodes
from attnmeta.tasks.image_folder import load_image_folder
from support import make_image_folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def test_an_init_that_is_not_a_run_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^config key 'model.init' is '.*nowhere': .*does "
                                          r"not exist"):
        load_init(str(tmp_path / "nowhere"))


def test_protonet_on_cached_features_predicts_as_protonet_over_the_frozen_encoder(data_root):
    torch.manual_seed(0)
    encoder = Conv4(1, 0, 8, 16, "running").double().eval()
    with torch.no_grad():  # non-trivial running statistics
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    split = load_image_folder(data_root, "test", 16)
    split.images = split.images.double()
    features = cached_features(encoder, split, None)
    from attnmeta.runs.config import EpisodeConfig

    shape = EpisodeConfig(3, 1, 2)
    on_images = collate_episodes(list(make_episodes(split, shape, 6, seed=1)))
    on_features = collate_episodes(list(make_episodes(features, shape, 6, seed=1)))
    direct = ProtoNet(encoder).eval().predict_batch(on_images)
    cached = ProtoNet(FeatureHead(features.items.shape[1])).eval().predict_batch(on_features)
    assert torch.allclose(direct, cached, rtol=1e-12, atol=1e-12)
    assert torch.equal(direct.argmax(-1), cached.argmax(-1))


def test_the_feature_cache_is_keyed_by_encoder_weights_and_data(tmp_path, data_root):
    torch.manual_seed(0)
    encoder = Conv4(1, 0, 8, 16, "running").eval()
    split = load_image_folder(data_root, "train", 16)
    first = cached_features(encoder, split, tmp_path)
    [path] = tmp_path.glob("*.safetensors")
    assert torch.equal(cached_features(encoder, split, tmp_path).items, first.items)
    with torch.no_grad():
        encoder.features[0][0].weight.add_(0.5)
    changed = cached_features(encoder, split, tmp_path)
    assert not torch.equal(changed.items, first.items)
    [new_path] = tmp_path.glob("*.safetensors")  # the stale file is replaced
    assert new_path != path and encoder_sha256(encoder)[:16] in new_path.name
    split.images[0, 0, 0, 0] += 0.25
    assert not any(p == new_path for p in (cached_features(encoder, split, tmp_path),
                                           *tmp_path.glob("*.safetensors")) if isinstance(p, Path))
    new_path.write_bytes(b"damaged")  # a damaged cache is computed again
    again = cached_features(encoder, load_image_folder(data_root, "train", 16), tmp_path)
    assert torch.equal(again.items, changed.items)


def test_the_feature_cache_tells_token_maps_of_the_same_weights_apart(tmp_path, data_root):
    from attnmeta.models.spatial import SpatialTokens

    torch.manual_seed(0)
    split = load_image_folder(data_root, "train", 16)
    last = Conv4(1, 0, 8, 16, "running").eval()
    earlier = Conv4(1, 0, 8, 16, "running", token_block=3).eval()
    earlier.load_state_dict(last.state_dict())
    tokens = [SpatialTokens(backbone, 16).eval() for backbone in (last, earlier)]
    assert encoder_sha256(tokens[0]) == encoder_sha256(tokens[1])  # the same weights
    cached = [cached_features(encoder, split, tmp_path) for encoder in tokens]
    # at 16 px block 4's 2x2 map against block 3's 4x4: computed again, not read back
    assert [c.items.shape[1] for c in cached] == [4 * 8, 16 * 8]
    with torch.no_grad():
        assert torch.equal(cached[1].items, tokens[1](split.items).flatten(1))


def test_features_another_run_cached_are_read_by_their_full_keys_and_copied(
        tmp_path, data_root, monkeypatch):
    import attnmeta.runs.features as features_module

    torch.manual_seed(0)
    encoder = Conv4(1, 0, 8, 16, "running").eval()
    split = load_image_folder(data_root, "train", 16)
    first = cached_features(encoder, split, tmp_path / "a" / "features")
    embedded = []
    real_embed = features_module.embed_items
    monkeypatch.setattr(features_module, "embed_items",
                        lambda *args, **kwargs: embedded.append(1) or real_embed(*args, **kwargs))
    lent = cached_features(encoder, split, tmp_path / "b" / "features",
                           also_read=[tmp_path / "a" / "features"])
    assert not embedded and torch.equal(lent.items, first.items)
    assert [p.name for p in (tmp_path / "b/features").glob("*.safetensors")] == \
        [p.name for p in (tmp_path / "a/features").glob("*.safetensors")]
    # the other run's file under this encoder's name but of other weights: not taken
    [other] = (tmp_path / "a/features").glob("*.safetensors")
    with torch.no_grad():
        changed = Conv4(1, 0, 8, 16, "running").eval()
        changed.features[0][0].weight.add_(0.5)
    target = tmp_path / "c" / "features" / other.name.replace(
        encoder_sha256(encoder)[:16], encoder_sha256(changed)[:16])
    target.parent.mkdir(parents=True)
    target.write_bytes(other.read_bytes())  # right name, wrong encoder_sha256 inside
    fresh = cached_features(changed, split, tmp_path / "d" / "features",
                            also_read=[target.parent])
    assert embedded == [1] and not torch.equal(fresh.items, first.items)


def test_cached_features_keep_the_alphabets_of_the_split_they_came_from():
    """Within-alphabet episodes over a frozen encoder's cached features group classes as the
    images' split does (a split without alphabets stays without: the bug shows)."""
    import torch
    from torch import nn

    from attnmeta.runs.features import cached_features
    from attnmeta.tasks.omniglot import OmniglotSplit
    from attnmeta.tasks.splits import class_groups

    split = OmniglotSplit(torch.rand(6, 1, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2]),
                          ["A/c1", "A/c2", "B/c1"], "lake", "test")
    features = cached_features(nn.Flatten(), split, None)
    assert features.class_alphabets == ["A", "A", "B"]
    assert class_groups(features, "alphabet", "data.test") == ["A", "A", "B"]
