"""The sinusoid regression task family of MAML (Finn et al., ICML 2017, section 5.1).

Each task is y = A sin(x - φ) with amplitude A ~ U[0.1, 5.0], phase φ ~ U[0, π],
inputs x ~ U[-5, 5]; the loss is mean squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnmeta.tasks.episode import Episode

__all__ = ["SinusoidTasks"]


@dataclass(frozen=True)
class SinusoidTasks:
    """Generator of sinusoid regression episodes, reproducible from ``seed``.

    ``batch(index, num_tasks)`` returns an :class:`Episode` with
    ``support_x [T, k_shot, 1]``, ``support_y [T, k_shot, 1]``,
    ``query_x [T, q_query, 1]``, ``query_y [T, q_query, 1]`` and the task parameters.
    """

    k_shot: int = 10
    q_query: int = 10
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    seed: int = 0

    @staticmethod
    def function(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
        """``A sin(x - φ)``; ``amplitude`` and ``phase`` broadcast against ``x``."""
        return amplitude * torch.sin(x - phase)

    def _uniform(self, gen: torch.Generator, shape: tuple[int, ...], bounds) -> Tensor:
        low, high = bounds
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)

    def sample(self, index: int, num_tasks: int) -> tuple[Episode, Tensor, Tensor]:
        """Meta-batch ``index``: (episode batch, amplitude [T], phase [T])."""
        # Hash (seed, index) so that no two pairs share a stream (seed*K + index would).
        stream = int(np.random.SeedSequence([self.seed, index]).generate_state(1, np.uint64)[0])
        gen = torch.Generator().manual_seed(stream)
        amplitude = self._uniform(gen, (num_tasks, 1, 1), self.amplitude_range)
        phase = self._uniform(gen, (num_tasks, 1, 1), self.phase_range)
        x = self._uniform(gen, (num_tasks, self.k_shot + self.q_query, 1), self.x_range)
        y = self.function(x, amplitude, phase)
        k = self.k_shot
        episode = Episode(support_x=x[:, :k], support_y=y[:, :k], query_x=x[:, k:], query_y=y[:, k:])
        return episode, amplitude.flatten(), phase.flatten()

    def batch(self, index: int, num_tasks: int) -> Episode:
        return self.sample(index, num_tasks)[0]
