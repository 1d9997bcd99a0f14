"""attnmeta.models.capabilities: what a backbone class declares, read from the class (and its
bases), never probed on the instance."""

from __future__ import annotations

from torch import nn

from attnmeta.models import Conv4
from attnmeta.models.capabilities import declared, declares, has_features, has_patch_attention


@declares("features")
class _Encoder(nn.Module):
    feature_dim = 3


class _Subclass(_Encoder):
    pass


class _Undeclared(nn.Module):
    feature_dim = 3  # an attribute alone declares nothing


def test_a_declaration_holds_for_the_class_and_its_subclasses_and_nothing_else():
    assert declared(_Encoder(), "features") and has_features(_Subclass())
    assert not declared(_Encoder(), "patch_attention") and not has_patch_attention(_Subclass())
    assert not has_features(_Undeclared()) and not has_features(nn.Sequential())


def test_built_in_conv4_declares_features_and_not_patch_attention():
    model = Conv4(1, 0, hidden=8)
    assert has_features(model) and not has_patch_attention(model)
