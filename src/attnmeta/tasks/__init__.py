"""Tasks: episodes, the N-way K-shot sampler, task families and data sets.

Each data set's loader file registers its entry (:func:`register_dataset`); importing them
all here is what fills :data:`DATASETS` whenever the registry is read."""

from attnmeta.tasks.episode import Episode, collate_episodes
from attnmeta.tasks.image_folder import LabelledImages, load_image_folder
from attnmeta.tasks import banking77, clinc150, emoji, medmnist, text  # noqa: F401 (register)
from attnmeta.tasks.omniglot import download_omniglot, load_omniglot, omniglot_episodes
from attnmeta.tasks.registry import DATASETS, DatasetEntry, register_dataset
from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.tasks.sinusoid import SinusoidTasks
from attnmeta.tasks.splits import LabelledSplit, check_episode_shape

__all__ = ["Episode", "collate_episodes", "FewShotEpisodes", "SinusoidTasks", "LabelledImages",
           "load_image_folder", "download_omniglot", "load_omniglot", "omniglot_episodes",
           "LabelledSplit", "check_episode_shape", "DATASETS", "DatasetEntry",
           "register_dataset"]
