"""The intent data sets by name: one entry point over CLINC150 and BANKING77.

Takes plain arguments (a data set name, a data root, a split), so the tasks layer needs
nothing from :mod:`attnmeta.runs`; a run passes ``config.data.dataset``,
``config.data.root`` and ``config.data.max_length``. The loaders themselves are
:mod:`attnmeta.tasks.clinc150` and :mod:`attnmeta.tasks.banking77`; what they share is
:mod:`attnmeta.tasks.text`, which imports neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from attnmeta.errors import ConfigError
from attnmeta.tasks.registry import DATASETS
from attnmeta.tasks.text import LabelledTexts, LabelledTokens, check_split, tokenize_split

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["load_intent_texts", "load_intent_tokens", "meta_train_texts",
           "load_out_of_scope_tokens"]


def _check_dataset(dataset: str) -> None:
    """``dataset`` is a registered data set of sentences (its entry declares ``texts``)."""
    texts = [name for name, entry in DATASETS.items() if entry.texts is not None]
    if dataset not in texts:
        raise ConfigError(f"data.dataset={dataset!r}: expected one of {', '.join(texts)}")


def load_intent_texts(dataset: str, root: str | Path | None, split: str) -> LabelledTexts:
    """The untokenized class split ``split`` ('train' | 'val' | 'test') of ``dataset``
    ('clinc150' | 'banking77'): ``texts [N]``, ``labels [N]``, ``class_names [C]``.

    ``root`` is the data root or the data set's folder (None: ``$ATTNMETA_DATA``, else the
    default, see :mod:`attnmeta.tasks.data_root`).
    """
    _check_dataset(dataset)
    check_split(split)
    return DATASETS[dataset].texts(root, split)  # the loader its entry declares


def load_intent_tokens(dataset: str, root: str | Path | None, split: str,
                       tokenizer: "TextTokenizer", max_length: int) -> LabelledTokens:
    """Class split ``split`` of ``dataset`` as int64 ``token_ids [N, max_length]`` (padded
    with the tokenizer's ``pad_id``), ``labels [N]``, ``class_names [C]``, ``texts [N]``."""
    return tokenize_split(load_intent_texts(dataset, root, split), tokenizer, max_length)


def meta_train_texts(dataset: str, root: str | Path | None) -> list[str]:
    """Every sentence of the meta-train intents of ``dataset``: the only text a run's
    tokenizer is trained on."""
    return load_intent_texts(dataset, root, "train").texts


def load_out_of_scope_tokens(dataset: str, root: str | Path | None, split: str,
                             tokenizer: "TextTokenizer", max_length: int) -> Tensor:
    """CLINC150's out-of-scope utterances for ``split`` as int64 ids ``[M, max_length]``
    (``oos_val`` for 'val', ``oos_test`` for 'test', ``oos_train`` for 'train')."""
    check_split(split)
    sentences = DATASETS[dataset].out_of_scope if dataset in DATASETS else None
    if sentences is None:
        having = [name for name, entry in DATASETS.items() if entry.out_of_scope is not None]
        raise ConfigError(f"data.dataset={dataset!r} has no out-of-scope utterances: "
                          f"expected one of {', '.join(map(repr, having))}")
    return tokenizer.encode_batch(sentences(root, split), max_length)
