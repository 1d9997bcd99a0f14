"""What a backbone offers beyond its forward, declared by its class and typed as Protocols.

A backbone class states its capabilities once, beside its definition, with
:func:`declares` (``@declares("features", "patch_attention")``); code that needs one asks
:func:`has_features`, :func:`has_patch_attention`, :func:`has_token_states` or
:func:`has_pretrained_parts`, which read those declarations (never the instance's
attributes) and narrow the module to the matching Protocol for type checkers. A module
whose class declares nothing (a user's ``nn.Sequential``) has no capability, so a learner
that needs one is refused with a message instead of failing deep inside.

The capabilities:

- ``features``: ``feature_dim: int``, the width of the features it returns with
  ``out_dim=0`` (:class:`FeatureEncoder`; FEAT, the in-context learner, Matching
  Networks' full-context embeddings and a frozen backbone read it).
- ``patch_attention``: ``forward(x, need_weights=True) -> (out, weights)`` and
  ``patch_attention(weights) -> [n, g, g]`` (:class:`PatchAttentionModel`).
- ``token_states``: ``token_states(token_ids, need_weights) -> (states, keep, weights)``
  (:class:`TokenStatesEncoder`; the text attention figures).
- ``pretrained_parts``: ``pretrained_parts() -> (module, free key prefixes)``, the part a
  weights file loads into (:class:`PartlyPretrained`).
- ``spatial_tokens``: ``token_map(x) -> [n, L, token_dim]``, its last feature map before
  pooling as ``L = H·W`` tokens (row-major), and ``token_grid(image_size) -> (H, W)``
  (:class:`SpatialTokensEncoder`; the relational learners read them through
  :class:`attnmeta.models.spatial.SpatialTokens`).
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol, TypeGuard, TypeVar

from torch import Tensor, nn

__all__ = ["Capability", "FeatureEncoder", "PatchAttentionModel", "TokenStatesEncoder",
           "PartlyPretrained", "SpatialTokensEncoder", "declares", "declared", "has_features", "has_patch_attention",
           "has_token_states", "has_pretrained_parts", "has_spatial_tokens"]

Capability = Literal["features", "patch_attention", "token_states", "pretrained_parts",
                     "spatial_tokens"]
ModuleClass = TypeVar("ModuleClass", bound=type)

# class -> what it declares; a subclass has its bases' capabilities too
_DECLARED: dict[type, frozenset[str]] = {}


class FeatureEncoder(Protocol):
    """A backbone whose features (``out_dim=0``) are ``[n, feature_dim]``."""

    feature_dim: int

    def __call__(self, x: Tensor) -> Tensor: ...


class PatchAttentionModel(Protocol):
    """A model that returns its attention and maps it onto the image's patch grid."""

    def __call__(self, x: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]: ...

    def patch_attention(self, weights: list[Tensor]) -> Tensor: ...


class TokenStatesEncoder(Protocol):
    """A text encoder that shows its last-layer token states and attention."""

    def token_states(self, token_ids: Tensor, need_weights: bool = False
                     ) -> tuple[Tensor, Tensor, list[Tensor]]: ...


class PartlyPretrained(Protocol):
    """A backbone whose pretrained weights load into one of its parts."""

    def pretrained_parts(self) -> tuple[nn.Module, tuple[str, ...]]: ...


class SpatialTokensEncoder(Protocol):
    """An image backbone that hands over its last feature map, before pooling, as tokens."""

    token_dim: int

    def token_map(self, x: Tensor) -> Tensor:
        """``x [n, C, S, S]`` -> ``[n, H·W, token_dim]``, locations row-major."""
        ...

    def token_grid(self, image_size: int) -> tuple[int, int]:
        """``(H, W)`` of :meth:`token_map` for ``image_size × image_size`` inputs."""
        ...


def declares(*capabilities: Capability) -> Callable[[ModuleClass], ModuleClass]:
    """Class decorator: instances of the class (and of its subclasses) have ``capabilities``."""

    def mark(cls: ModuleClass) -> ModuleClass:
        _DECLARED[cls] = frozenset(capabilities)
        return cls

    return mark


def declared(model: nn.Module, capability: Capability) -> bool:
    """Whether ``model``'s class, or one of its bases, declares ``capability``."""
    return any(capability in _DECLARED.get(cls, ()) for cls in type(model).__mro__)


def has_features(model: nn.Module) -> TypeGuard[FeatureEncoder]:
    return declared(model, "features")


def has_patch_attention(model: nn.Module) -> TypeGuard[PatchAttentionModel]:
    return declared(model, "patch_attention")


def has_token_states(model: nn.Module) -> TypeGuard[TokenStatesEncoder]:
    return declared(model, "token_states")


def has_pretrained_parts(model: nn.Module) -> TypeGuard[PartlyPretrained]:
    return declared(model, "pretrained_parts")


def has_spatial_tokens(model: nn.Module) -> TypeGuard[SpatialTokensEncoder]:
    return declared(model, "spatial_tokens")
