"""Conv4, the backbone of MAML, ProtoNets and Matching Networks on Omniglot / miniImageNet.

4 × [conv 3×3 (64), BatchNorm, ReLU, max-pool 2]; on 28×28 inputs the feature map ends
at 1×1×64 (the blocks give 14, 7, 3, 1: each pool floors). Its spatial tokens
(:meth:`Conv4.token_map`) are the last block's map before its pool: 3×3×64 at 28×28, or an
earlier block's (``token_block``; block 3: 7×7×64 at 28×28, finer parts).
BatchNorm uses the statistics of the batch it sees (as in MAML's reference code; see
:mod:`attnmeta.norm` for its vmap-exact form). The block pools before the ReLU: ReLU is
monotone, so ``relu(maxpool(x)) == maxpool(relu(x))`` value for value and
gradient for gradient, and the ReLU then runs on a quarter of the elements. Pooling uses
:mod:`attnmeta.pooling`'s faster forward kernel.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_backbone
from attnmeta.norm import BatchStatNorm2d
from attnmeta.pooling import MaxPool2d

__all__ = ["Conv4"]


def conv_block(in_channels: int, out_channels: int, norm: str = "batch") -> nn.Sequential:
    if norm not in ("batch", "running"):
        raise ValueError(f"norm={norm!r}: expected 'batch' (batch statistics) or 'running'")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        BatchStatNorm2d(out_channels) if norm == "batch" else nn.BatchNorm2d(out_channels),
        MaxPool2d(2),
        nn.ReLU(),
    )


def _halved(side: int, times: int) -> int:
    """The side of a map after ``times`` 2×2 max-pools (each floors)."""
    for _ in range(times):
        side //= 2
    return side


@declares("features", "spatial_tokens")
class Conv4(nn.Module):
    """``[N, C, H, W]`` images -> ``[N, out_dim]`` logits, or ``[N, features]`` if ``out_dim=0``.

    Spatial tokens (:meth:`token_map`): block ``token_block``'s conv, norm and ReLU without
    its pool (default the fourth), ``[N, h·h, hidden]`` with ``h`` the side after
    ``token_block - 1`` pools (block 4: ``⌊⌊⌊S/2⌋/2⌋/2⌋``, 3 at 28×28, 10 at 84×84; block 3:
    7 at 28×28). The blocks after it do not take part in the tokens.

    ``norm="batch"`` normalises with each batch's statistics (MAML); ``"running"`` uses
    ``nn.BatchNorm2d`` with running statistics in eval mode (ProtoNets, Matching Nets).
    """

    def __init__(self, in_channels: int = 1, out_dim: int = 5, hidden: int = 64,
                 image_size: int = 28, norm: str = "batch", token_block: int = 4) -> None:
        super().__init__()
        if not 1 <= token_block <= 4:
            raise ValueError(f"token_block={token_block}: expected 1..4 (Conv4's blocks)")
        self.token_block = token_block
        self.features = nn.Sequential(
            conv_block(in_channels, hidden, norm), conv_block(hidden, hidden, norm),
            conv_block(hidden, hidden, norm), conv_block(hidden, hidden, norm),
        )
        side = _halved(image_size, 4)
        self.feature_dim = hidden * side * side
        self.token_dim = hidden
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))

    def token_map(self, x: Tensor) -> Tensor:
        """``x [N, C, S, S]`` -> ``[N, h·h, hidden]``: block ``token_block``'s map before its
        pool (row-major locations; see :meth:`token_grid`). The norm precedes the pool, so it
        sees what it sees in :meth:`forward`."""
        conv, norm, _pool, relu = self.features[self.token_block - 1]
        before = self.features[:self.token_block - 1]
        return relu(norm(conv(before(x)))).flatten(2).transpose(1, 2)

    def token_grid(self, image_size: int) -> tuple[int, int]:
        """``(h, h)`` of :meth:`token_map` at ``image_size × image_size``."""
        side = _halved(image_size, self.token_block - 1)
        return side, side

    def extra_repr(self) -> str:
        # in the repr, so that what the frozen-feature cache keys on tells token maps apart
        return f"token_block={self.token_block}"


register_backbone("conv4", lambda m, in_channels, out_dim, image_size: Conv4(
    in_channels, out_dim, m.hidden, image_size, m.norm, m.token_block or 4),
    norm_configurable=True, token_blocks=4)
