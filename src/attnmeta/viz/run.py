"""Draw a trained run's attention maps: the one entry point of ``attnmeta viz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.viz.images import write_attention_maps
from attnmeta.viz.text import write_text_attention_maps

__all__ = ["write_run_attention_maps"]


def write_run_attention_maps(run: Any, split: str, episode_seed: int, out_dir: Path
                             ) -> list[Path]:
    """Draw ``run.learner`` on episode 0 of ``episode_seed`` over class split ``split``,
    shaped as the run's test episodes; returns the PNGs written in ``out_dir``.

    ``run`` is what :func:`attnmeta.runs.episodic.load_run` returns (typed loosely so
    that viz/ never imports the run types): its ``learner``, ``config.data.test`` (the
    episode shape), ``split(name)`` (the labelled split) and ``tokenizer`` (a text run's,
    else None). Image runs get :func:`~attnmeta.viz.images.write_attention_maps`, text runs
    :func:`~attnmeta.viz.text.write_text_attention_maps`; a gradient learner adapts for
    its ``eval_steps``.
    """
    shape, data = run.config.data.test, run.split(split)
    if run.tokenizer is not None:
        return write_text_attention_maps(run.learner, data, shape.n_way, shape.k_shot,
                                         shape.q_query, episode_seed, out_dir, run.tokenizer)
    episode = FewShotEpisodes(data.items, data.labels.tolist(), shape.n_way, shape.k_shot,
                              shape.q_query, 1, episode_seed)[0]
    return write_attention_maps(run.learner, episode, Path(out_dir))
