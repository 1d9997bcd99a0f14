"""Attention pictures: what a learner attended to on one episode, as PNG files.

:mod:`attnmeta.viz.images` draws image episodes (query x support, prototypes, patches,
the correspondences of :mod:`attnmeta.viz.correspondence`),
:mod:`attnmeta.viz.text` draws sentences with their token-level attention, and
:func:`write_run_attention_maps` picks between them for a trained run. The weights come
from the learner itself (:meth:`attnmeta.learners.MetaLearner.attention_maps`).
"""

from attnmeta.viz.correspondence import correspondence_matches, plot_correspondence
from attnmeta.viz.images import (episode_attention, plot_episode_correspondence,
                                 plot_patch_attention, plot_prototype_attention,
                                 plot_query_support_attention, shown_queries, write_attention_maps)
from attnmeta.viz.run import write_run_attention_maps

__all__ = ["correspondence_matches", "episode_attention", "plot_correspondence",
           "plot_episode_correspondence", "plot_patch_attention", "plot_prototype_attention",
           "plot_query_support_attention", "shown_queries", "write_attention_maps",
           "write_run_attention_maps"]
