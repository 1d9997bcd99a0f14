"""Attention maps for text episodes: which support sentences and tokens a query looks at.

For one query sentence of a seeded test episode, one figure with four panels:

1. **Query over support sentences**: the learner's own attention ``a(x̂, x_i)`` where its
   :meth:`~attnmeta.learners.MetaLearner.attention_maps` has a ``"query_support"`` map
   (Matching Networks, Vinyals et al. 2016; the in-context classifier, its last block,
   heads averaged). Learners without such attention (ProtoNets, FEAT, MAML, Reptile) show
   the cosine similarity of the sentence vectors instead, and the panel says so.
2. **Query tokens**: the encoder's last-layer self-attention over the query's tokens
   (heads averaged; row = attending token).
3. **Query tokens × support tokens**: cosine similarity of the last-layer token states of
   the query and of the support sentence it attends to most: which words were matched.
4. **That support sentence's tokens**: its last-layer self-attention.

Axes are labelled with the decoded tokens and the intent names.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Protocol

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from attnmeta.errors import ConfigError, InputError
from attnmeta.learners import MetaLearner
from attnmeta.learners.base import TokenStatesEncoder
from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.tasks.text import LabelledTokens

__all__ = ["TextAttention", "learner_encoder", "text_attention", "plot_text_attention",
           "write_text_attention_maps", "sentence_states"]


def learner_encoder(learner: MetaLearner) -> TokenStatesEncoder:
    """The sentence encoder inside ``learner`` (:meth:`~attnmeta.learners.MetaLearner.backbone`),
    where its class declares ``token_states`` (the text encoders of :mod:`attnmeta.models`)."""
    encoder = learner.token_encoder()
    if encoder is None:
        raise InputError(f"{type(learner).__name__} has no text encoder to draw: expected a "
                         "learner over model.backbone text_transformer or hf")
    return encoder


class TokenNames(Protocol):
    """What the figures need of a tokenizer (:class:`attnmeta.bpe.TextTokenizer`)."""

    def token_strings(self, ids: list[int]) -> list[str]: ...


class TextAttention:
    """What the figure of one query shows (tensors without a task dimension).

    Attributes:
        sentence_weights: ``[S]`` query-over-support weights (or cosine similarities).
        learner_attention: whether ``sentence_weights`` is the learner's own attention.
        query_attention: ``[Lq, Lq]`` last-layer attention among the query's tokens.
        best_support: index of the support sentence with the largest weight.
        support_attention: ``[Ls, Ls]`` last-layer attention among that sentence's tokens.
        token_similarity: ``[Lq, Ls]`` cosine similarity of their last-layer token states.
    """

    def __init__(self, sentence_weights: Tensor, learner_attention: bool,
                 query_attention: Tensor, best_support: int, support_attention: Tensor,
                 token_similarity: Tensor) -> None:
        self.sentence_weights, self.learner_attention = sentence_weights, learner_attention
        self.query_attention, self.best_support = query_attention, best_support
        self.support_attention, self.token_similarity = support_attention, token_similarity


def sentence_states(encoder: TokenStatesEncoder, token_ids: Tensor) -> tuple[Tensor, Tensor]:
    """One sentence ``[L]`` -> its token states ``[L', D]`` and last-layer attention
    ``[L', L']`` (heads averaged), ``L'`` its own length."""
    states, keep, weights = encoder.token_states(token_ids[None], need_weights=True)
    if not weights:  # e.g. wordllama with model.depth=0: a mean of embeddings, no attention
        raise InputError(f"the {type(encoder).__name__} has no attention layer to draw: "
                         "expected a text encoder with some (model.depth >= 1)")
    length = int(keep[0].sum())
    last = weights[-1][0].mean(0)  # [L', L'] over heads
    return states[0, :length], last[:length, :length]


def text_attention(learner: MetaLearner, support_x: Tensor, support_y: Tensor,
                   query_x: Tensor, query_index: int) -> TextAttention:
    """The attention of query ``query_index`` of one episode (``support_x [S, L]``,
    ``support_y [S]``, ``query_x [Q, L]`` token ids)."""
    encoder = learner_encoder(learner)
    learner.eval()
    own = "query_support" in learner.attention_map_names()
    with torch.no_grad():
        if own:
            maps = learner.attention_maps(support_x, support_y, query_x)
            sentence_weights = maps["query_support"][query_index]
        else:
            states, keep, _ = encoder.token_states(torch.cat([query_x[query_index:query_index + 1],
                                                              support_x]))
            weights = keep.to(states.dtype).unsqueeze(-1)
            vectors = (states * weights).sum(1) / weights.sum(1)
            sentence_weights = F.cosine_similarity(vectors[:1], vectors[1:], dim=-1)
        best = int(sentence_weights.argmax())
        query_states, query_attention = sentence_states(encoder, query_x[query_index])
        support_states, support_attention = sentence_states(encoder, support_x[best])
        similarity = F.normalize(query_states, dim=-1) @ F.normalize(support_states, dim=-1).T
    return TextAttention(sentence_weights, own, query_attention, best, support_attention,
                         similarity)


def _heat(ax, values: Tensor, x_labels: list[str], y_labels: list[str], title: str,
          cmap: str = "viridis", vmin: float | None = 0.0, vmax: float | None = None) -> None:
    image = ax.imshow(values.detach().cpu().numpy(), cmap=cmap, vmin=vmin, vmax=vmax,
                      aspect="auto")
    ax.set_xticks(range(len(x_labels)), x_labels, rotation=70, fontsize=7)
    ax.set_yticks(range(len(y_labels)), y_labels, fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)


def plot_text_attention(attention: TextAttention, query_text: str, query_tokens: list[str],
                        support_texts: list[str], support_classes: list[str],
                        best_tokens: list[str], query_class: str, predicted_class: str,
                        learner_name: str) -> Figure:
    """The four-panel figure described in the module docstring."""
    fig = plt.figure(figsize=(15, 9.5))
    grid = fig.add_gridspec(2, 3, width_ratios=[1.25, 1, 1], height_ratios=[1, 1],
                            wspace=0.45, hspace=0.55)
    bars = fig.add_subplot(grid[:, 0])
    weights = attention.sentence_weights.detach().cpu()
    labels = [f"[{name}] " + textwrap.shorten(text, 48, placeholder="…")
              for text, name in zip(support_texts, support_classes)]
    colours = ["tab:green" if name == query_class else "tab:gray" for name in support_classes]
    bars.barh(range(len(weights)), weights.numpy(), color=colours)
    bars.set_yticks(range(len(weights)), labels, fontsize=6.5)
    bars.invert_yaxis()
    what = ("learner attention a(query, support)" if attention.learner_attention else
            "cosine similarity of sentence vectors\n(this learner has no query-support attention)")
    bars.set_xlabel(what, fontsize=8)
    bars.set_title("query over the support sentences\n(green: the query's true intent)",
                   fontsize=8)
    _heat(fig.add_subplot(grid[0, 1]), attention.query_attention, query_tokens, query_tokens,
          "query tokens: last-layer self-attention\n(row attends to column, heads averaged)")
    _heat(fig.add_subplot(grid[0, 2]), attention.token_similarity, best_tokens, query_tokens,
          "query tokens (rows) × tokens of the most-attended\nsupport sentence: cosine of "
          "last-layer states", cmap="coolwarm", vmin=-1.0, vmax=1.0)
    _heat(fig.add_subplot(grid[1, 2]), attention.support_attention, best_tokens, best_tokens,
          "most-attended support sentence: last-layer self-attention")
    note = fig.add_subplot(grid[1, 1])
    note.axis("off")
    best = attention.best_support
    note.text(0.0, 0.95, "\n".join([
        "query:", textwrap.fill(query_text, 42), "", f"true intent: {query_class}",
        f"predicted: {predicted_class}", "", "most-attended support sentence:",
        textwrap.fill(support_texts[best], 42), f"(intent {support_classes[best]})"]),
        va="top", fontsize=8, family="monospace")
    fig.suptitle(f"{learner_name}: where one query looks in its episode", fontsize=10)
    return fig


def write_text_attention_maps(learner: MetaLearner, split: LabelledTokens, n_way: int,
                              k_shot: int, q_query: int, episode_seed: int, out_dir: Path,
                              tokenizer: TokenNames, queries: int = 3) -> list[Path]:
    """Draw episode 0 of ``episode_seed`` (``n_way``-way ``k_shot``-shot, ``q_query``
    queries per class) over ``split``: one PNG for each of the first ``queries`` classes'
    first query, ``attention_text_q<i>.png`` in ``out_dir``. The predicted intent is the
    learner's ``predict`` (a gradient learner adapts for its ``eval_steps``)."""
    if q_query < 1:
        raise ConfigError(f"q_query={q_query}: expected at least 1 query to draw")
    episodes = FewShotEpisodes(split.token_ids, split.labels.tolist(), n_way, k_shot, q_query,
                               1, episode_seed)
    episode = episodes[0]
    support_index, query_index = episodes.episode_indices(0)
    class_of = [split.class_names[int(split.labels[row[0]])] for row in support_index]
    support_rows = support_index.reshape(-1).tolist()
    query_rows = query_index.reshape(-1).tolist()
    logits = learner.predict(episode.support_x, episode.support_y, episode.query_x)
    predicted = logits.argmax(-1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for shown in range(min(queries, n_way)):
        q = shown * q_query  # the first query of class `shown`
        attention = text_attention(learner, episode.support_x, episode.support_y,
                                   episode.query_x, q)
        best_ids = episode.support_x[attention.best_support]
        fig = plot_text_attention(
            attention, split.texts[query_rows[q]],
            tokenizer.token_strings(episode.query_x[q].tolist()),
            [split.texts[i] for i in support_rows],
            [class_of[int(y)] for y in episode.support_y],
            tokenizer.token_strings(best_ids.tolist()), class_of[int(episode.query_y[q])],
            class_of[int(predicted[q])], learner.display_name)
        path = out_dir / f"attention_text_q{shown}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
