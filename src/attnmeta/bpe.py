"""Sentence tokenizer for the text data sets: byte-level BPE trained on the meta-train text.

A text run trains its tokenizer on the meta-train split only (no test intent's words shape
the vocabulary), with the ``tokenizers`` library (no download): NFKC + lower-casing, GPT-2's
byte-level pre-tokenizer (Radford et al. 2019) and BPE merges (Sennrich et al., ACL 2016).
Byte-level BPE has no unknown token, so decoding an encoding gives back the normalised text
exactly. The tokenizer is saved beside the run's checkpoints as ``tokenizer.json`` (the
``tokenizers`` JSON format, padding token included) and reloaded by ``attnmeta eval``.

A pretrained Hugging Face model brings its own tokenizer instead
(:func:`tokenizer_from_pretrained`); it is saved in the same format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor

from attnmeta.errors import ConfigError, InputError, MissingDependencyError
from attnmeta.files import atomic_write_bytes

__all__ = ["PAD_TOKEN", "MIN_VOCAB_SIZE", "TextTokenizer", "train_tokenizer",
           "tokenizer_from_pretrained"]

PAD_TOKEN = "[PAD]"
# 256 byte symbols + the padding token: below this BPE cannot learn a single merge
MIN_VOCAB_SIZE = 300


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - a core dependency, but say so if it is missing
        raise MissingDependencyError("text data sets need the `tokenizers` package: "
                                     "pip install tokenizers") from None
    return tokenizers


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with a padding token, encoding sentences into id rows.

    ``encode_batch(texts, max_length)`` gives int64 ``[N, max_length]`` ids, each row the
    sentence's tokens (cut after ``max_length``) followed by ``pad_id``.
    """

    def __init__(self, tokenizer, pad_token: str = PAD_TOKEN) -> None:
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise InputError(f"tokenizer has no padding token {pad_token!r}: expected it in "
                             "its vocabulary")
        self.tokenizer = tokenizer
        self.pad_token, self.pad_id = pad_token, pad_id
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # recorded in the JSON
        pre_tokenizer = json.loads(tokenizer.to_str()).get("pre_tokenizer") or {}
        # GPT-2's byte-level pre-tokenizer puts a space before the first word
        self._strips_prefix_space = (pre_tokenizer.get("type") == "ByteLevel"
                                     and bool(pre_tokenizer.get("add_prefix_space")))

    @property
    def vocab_size(self) -> int:
        """Number of token ids (every id is below this)."""
        return self.tokenizer.get_vocab_size()

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (NFKC, lower case for a trained tokenizer)."""
        normalizer = self.tokenizer.normalizer
        return text if normalizer is None else normalizer.normalize_str(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of one sentence (no padding)."""
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str], max_length: int) -> Tensor:
        """int64 ``[len(texts), max_length]``: tokens cut after ``max_length``, then padding."""
        if max_length < 1:
            raise ConfigError(f"max_length={max_length}: expected at least 1 token")
        ids = torch.full((len(texts), max_length), self.pad_id, dtype=torch.int64)
        self.tokenizer.no_padding()
        try:
            encodings = self.tokenizer.encode_batch(list(texts))
        finally:
            self.tokenizer.enable_padding(pad_id=self.pad_id, pad_token=self.pad_token)
        for row, encoding in enumerate(encodings):
            tokens = encoding.ids[:max_length]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        return ids

    def _strip_padding(self, ids: Iterable[int]) -> list[int]:
        return [int(i) for i in ids if int(i) != self.pad_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (padding and other special tokens dropped)."""
        text = self.tokenizer.decode(self._strip_padding(ids), skip_special_tokens=True)
        return text[1:] if text.startswith(" ") and self._strips_prefix_space else text

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """One readable string per non-padding token (for axis labels); with byte-level BPE
        a piece that continues a word is shown as ``##piece`` (BERT's convention)."""
        strings = []
        for i in self._strip_padding(ids):
            text = self.tokenizer.decode([i], skip_special_tokens=False).strip() or "␣"
            piece = self.tokenizer.id_to_token(i) or ""
            continues = self._strips_prefix_space and not piece.startswith("Ġ")
            strings.append(f"##{text}" if continues and text != "␣" else text)
        return strings

    def to_json(self) -> str:
        """The ``tokenizers`` JSON (vocabulary, merges, normaliser, padding token)."""
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str, where: str = "tokenizer JSON") -> "TextTokenizer":
        tokenizers = _import_tokenizers()
        try:
            tokenizer = tokenizers.Tokenizer.from_str(text)
        except Exception as error:  # the Rust side raises plain Exceptions
            raise InputError(f"{where} is not a readable tokenizers JSON ({error})") from None
        padding = tokenizer.padding
        pad_token = padding["pad_token"] if padding else PAD_TOKEN
        return cls(tokenizer, pad_token)

    def save(self, path: Path) -> None:
        """Write ``tokenizer.json`` atomically (readers never see half a file)."""
        atomic_write_bytes(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> "TextTokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist: expected the "
                                    "tokenizer.json saved with the run")
        return cls.from_json(path.read_text(), where=str(path))


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2
                    ) -> TextTokenizer:
    """Byte-level BPE with at most ``vocab_size`` ids, learned from ``texts``.

    Id 0 is ``[PAD]``; ids 1..256 are the byte symbols; the rest are merges seen at least
    ``min_frequency`` times. Training is deterministic for the same texts in the same order.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(f"vocab_size={vocab_size}: expected at least {MIN_VOCAB_SIZE} "
                          "(256 byte symbols, the padding token and some merges)")
    tokenizers = _import_tokenizers()
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[PAD_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return TextTokenizer(tokenizer, PAD_TOKEN)


def tokenizer_from_pretrained(path: str | Path) -> TextTokenizer:
    """The fast tokenizer saved with a local Hugging Face model folder (no download).

    Its special tokens (e.g. BERT's ``[CLS] ... [SEP]``) are added by the tokenizer's own
    post-processor, as the pretrained model expects.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model.hf_path={str(path)!r} is not a folder: expected a "
                                "local Hugging Face model folder (config.json, weights, "
                                "tokenizer files)")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependencyError("model.backbone='hf' needs the optional `transformers` "
                                     "package: pip install 'attnmeta[hf]'") from None
    hf_tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None or hf_tokenizer.pad_token is None:
        raise InputError(f"the tokenizer in {path} is not a fast tokenizer with a padding "
                         "token: expected a tokenizer.json with one")
    return TextTokenizer(_import_tokenizers().Tokenizer.from_str(backend.to_str()),
                         hf_tokenizer.pad_token)

