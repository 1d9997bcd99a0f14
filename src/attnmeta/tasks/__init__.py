"""Tasks: episodes, the N-way K-shot sampler, task families and data sets."""

from attnmeta.tasks.episode import Episode, collate_episodes
from attnmeta.tasks.image_folder import LabelledImages, load_image_folder
from attnmeta.tasks.omniglot import download_omniglot, load_omniglot, omniglot_episodes
from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.tasks.sinusoid import SinusoidTasks
from attnmeta.tasks.splits import LabelledSplit, check_episode_shape

__all__ = ["Episode", "collate_episodes", "FewShotEpisodes", "SinusoidTasks", "LabelledImages",
           "load_image_folder", "download_omniglot", "load_omniglot", "omniglot_episodes",
           "LabelledSplit", "check_episode_shape"]
