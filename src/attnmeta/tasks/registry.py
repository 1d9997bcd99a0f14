"""The data sets a config names (``data.dataset``), each registered by its loader's file.

A loader file ends with one line, ``register_dataset("name", DatasetEntry(...))``, whose
fields declare what the data set is and offers (text or images, colour channels, inverted
strokes, alphabets, out-of-scope queries, a download); the ``attnmeta.tasks`` package imports
every loader file, so importing this module (which imports the package first) always sees
the built-in entries. Run code reads these declarations, never a data set's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from attnmeta.errors import ConfigError

if TYPE_CHECKING:
    from attnmeta.tasks.splits import LabelledSplit

__all__ = ["DatasetEntry", "DATASETS", "register_dataset", "dataset_named"]

Root = str | Path | None


@dataclass(frozen=True)
class DatasetEntry:
    """How to load a data set's class split and what it declares about itself.

    Attributes:
        load: ``(config, split, tokenizer) -> LabelledSplit`` for images (``config.data``
            holds root, image_size, channels, protocol); None for text, whose split is
            :attr:`texts` tokenized by the run's tokenizer.
        texts: text data sets: ``(data root, split) -> LabelledTexts``, the untokenized
            class split (the run's tokenizer is trained on the ``"train"`` one).
        channels: images: the most colour channels it holds (3: data.channels 1 or 3).
        download: ``data root -> where it went``, or None (the user's own files).
        inverted: images hold dark strokes on white and the loader inverts them
            (Omniglot), so an image a person brings is inverted too.
        alphabets: ``data section -> bool``: whether its splits group classes into
            alphabets (``class_alphabets``) that a model may be evaluated within
            (``data.*.within: alphabet``); None: never.
        out_of_scope: text: ``(data root, split) -> sentences`` of no class, for
            out-of-scope detection (``attnmeta eval --oos``); None: it has none.
    """

    load: Callable[[Any, str, Any], "LabelledSplit"] | None = None
    # a LabelledTexts (attnmeta.tasks.text, which registers through this module)
    texts: Callable[[Root, str], Any] | None = None
    channels: int = 1
    download: Callable[[str | None], object] | None = None
    inverted: bool = False
    alphabets: Callable[[Any], bool] | None = None
    out_of_scope: Callable[[Root, str], list[str]] | None = None

    def __post_init__(self) -> None:
        if (self.load is None) == (self.texts is None):
            raise ValueError("a DatasetEntry has either load (images) or texts (sentences)")

    @property
    def text(self) -> bool:
        """Sentences: the run trains (or takes) a tokenizer and reads token ids."""
        return self.texts is not None

    def has_alphabets(self, data: Any) -> bool:
        """Whether the configured ``data`` section's splits have alphabets to stay within."""
        return self.alphabets is not None and self.alphabets(data)


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, entry: DatasetEntry) -> DatasetEntry:
    """Make ``data.dataset: <name>`` read ``entry``."""
    DATASETS[name] = entry
    return entry


def dataset_named(name: str) -> DatasetEntry:
    """``DATASETS[name]``, or a ConfigError naming the key and the registered names."""
    if name not in DATASETS:
        raise ConfigError(f"config key 'data.dataset' is {name!r}: expected one of "
                          f"{', '.join(map(repr, DATASETS))}")
    return DATASETS[name]
