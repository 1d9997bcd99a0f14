"""The backbone of a learner that reads precomputed features: the identity (metric
learners), or a linear head of ``out_dim`` classes (gradient learners)."""

from __future__ import annotations

from torch import Tensor, nn

from attnmeta.models.capabilities import declares

__all__ = ["FeatureHead"]


@declares("features")
class FeatureHead(nn.Module):
    """``[N, feature_dim]`` features -> themselves, or ``[N, out_dim]`` logits if
    ``out_dim > 0`` (the ``head`` of Conv4 and the vision transformer, by the same name)."""

    def __init__(self, feature_dim: int, out_dim: int = 0) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, out_dim) if out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x.flatten(1))
