"""What a classifier can be made from, decided in one place for the CLI, the API and the
server: a saved model folder (``attnmeta adapt --out``; already fitted), a run folder or
checkpoint (``attnmeta train``), or the name of a built-in pretrained encoder
(``attnmeta encoders``). A path that exists wins over an encoder of the same name, as a file
wins over a command's name in a shell."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from attnmeta.fewshot.classifier import FewShotClassifier
from attnmeta.fewshot.inputs import ModelError
from attnmeta.fewshot.model_folder import MODEL_MARKER

__all__ = ["SourceKind", "source_kind", "open_classifier"]

SourceKind = Literal["model", "run", "encoder"]


def source_kind(target: str | Path) -> SourceKind:
    """Which kind of source ``target`` is; a one-line :class:`ModelError` naming it and the
    three kinds (with the built-in encoders) when it is none of them."""
    from attnmeta.fewshot.encoders import ENCODERS

    path = Path(target)
    if path.exists():
        return "model" if (path / MODEL_MARKER).is_file() else "run"
    if str(target) in ENCODERS:
        return "encoder"
    raise ModelError(f"{str(target)!r} is neither a folder nor a built-in encoder: expected "
                     + _KINDS + ", ".join(ENCODERS))


_KINDS = ("a saved model folder (attnmeta adapt --out), a run folder (attnmeta train), or "
          "one of the encoders ")


def _encoders() -> list[str]:
    from attnmeta.fewshot.encoders import ENCODERS

    return list(ENCODERS)


def _may_be_run(path: Path) -> bool:
    """Whether ``path`` looks like a run (its folder, checkpoints folder or a checkpoint
    file), so that its own refusal (a damaged checkpoint, say) is the one to give."""
    from attnmeta.runs.folder import MARKER

    if path.is_dir():
        return path.name == "checkpoints" or (path / "checkpoints").is_dir() or \
            (path / MARKER).is_file()
    return path.suffix in (".json", ".safetensors")


def open_classifier(target: str | Path, precision: str | None = None) -> FewShotClassifier:
    """The classifier ``target`` names (see :func:`source_kind`): a saved model as it was
    saved (``precision`` None keeps its own), a run or an encoder not yet fitted. A path
    that is neither a saved model nor looks like a run (no ``checkpoints/``, no run marker,
    not a checkpoint file) is a one-line :class:`ModelError` listing the three kinds."""
    kind = source_kind(target)
    if kind == "run" and not _may_be_run(Path(target)):
        raise ModelError(f"{str(target)!r} is neither a saved model (no {MODEL_MARKER}) nor a run "
                         "(no checkpoints/): expected " + _KINDS + ", ".join(_encoders()))
    if kind == "model":
        return FewShotClassifier.load(target, precision)
    if kind == "run":
        return FewShotClassifier.from_run(target, precision or "float32")
    return FewShotClassifier.from_encoder(str(target), precision or "float32")
