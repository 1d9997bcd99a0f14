"""A text run's tokenizer: made when the run starts, kept in the run folder, reused after.

A new run trains byte-level BPE on the **meta-train** sentences only
(the ``"train"`` split of its data set entry's ``texts``), or takes the tokenizer of a local pretrained
Hugging Face model (``model.backbone: hf`` with ``model.hf_path``) or WordLlama's own
(``model.backbone: wordllama``, from its installed wheel), and saves it as
``<run>/tokenizer.json`` (atomically) before the first training step. A resumed run and
``attnmeta eval`` / ``viz`` load that file, so the ids a checkpoint was trained on never
change, whatever the installed ``tokenizers`` version would train today. A run started from a
text pretrain run (``model.init``) takes that run's tokenizer: its encoder knows those ids.
"""

from __future__ import annotations

from pathlib import Path

from attnmeta.models.registry import backbone_entry
from attnmeta.runs.build import dataset_entry
from attnmeta.runs.config import ExperimentConfig
from attnmeta.bpe import TextTokenizer, train_tokenizer

__all__ = ["TOKENIZER_FILE", "make_tokenizer", "run_tokenizer", "load_run_tokenizer"]

TOKENIZER_FILE = "tokenizer.json"


def make_tokenizer(config: ExperimentConfig) -> TextTokenizer:
    """A fresh tokenizer for ``config``: that of the pretrain run ``model.init``, the
    one the backbone's entry declares (a pretrained model's own,
    :mod:`attnmeta.models.registry`), or BPE with at most ``data.vocab_size`` ids trained
    on the meta-train sentences."""
    if config.model.init and (Path(config.model.init) / TOKENIZER_FILE).is_file():
        return TextTokenizer.load(Path(config.model.init) / TOKENIZER_FILE)
    own = backbone_entry(config.model.backbone).tokenizer
    if own is not None and (tokenizer := own(config)) is not None:
        return tokenizer
    texts = dataset_entry(config).texts
    if texts is None:
        raise ValueError(f"data.dataset={config.data.dataset!r} holds images: expected a "
                         "text data set to train a tokenizer on")
    tokenizer = train_tokenizer(texts(config.data.root, "train").texts, config.data.vocab_size)
    if tokenizer.pad_id != 0:  # the text encoders are built with padding id 0
        raise ValueError(f"trained tokenizer pads with id {tokenizer.pad_id}: expected 0")
    return tokenizer


def run_tokenizer(config: ExperimentConfig, run_dir: Path, resuming: bool, save: bool,
                  made: TextTokenizer | None = None) -> TextTokenizer:
    """The tokenizer of the run in ``run_dir``: loaded from its ``tokenizer.json`` when
    ``resuming``, else ``made`` (or one made by :func:`make_tokenizer`), written there if
    ``save``."""
    path = Path(run_dir) / TOKENIZER_FILE
    if resuming:
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: {path} does not exist, and a "
                                    "new tokenizer could number tokens differently from the "
                                    "one the checkpoint was trained with; expected the saved "
                                    "tokenizer.json (or start a new --out folder)")
        return TextTokenizer.load(path)
    tokenizer = made or make_tokenizer(config)
    if save:
        tokenizer.save(path)
    return tokenizer


def load_run_tokenizer(run_dir: Path) -> TextTokenizer:
    """The ``tokenizer.json`` a text run saved in ``run_dir``."""
    path = Path(run_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected the tokenizer a text run "
                                f"saves in its folder {run_dir}")
    return TextTokenizer.load(path)
