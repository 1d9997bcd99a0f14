"""Tasks: episodes, the N-way K-shot sampler and task families."""

from attnmeta.tasks.episode import Episode, collate_episodes
from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.tasks.sinusoid import SinusoidTasks

__all__ = ["Episode", "collate_episodes", "FewShotEpisodes", "SinusoidTasks"]
