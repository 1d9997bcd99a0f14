"""attnmeta.fewshot.source: which kind of source a target names (a saved model, a run, a
built-in encoder), on hand-made folders (a real saved model: test_encoders.py)."""

from __future__ import annotations

import pytest

from attnmeta.fewshot import ModelError
from attnmeta.fewshot.encoders import ENCODERS
from attnmeta.fewshot.model_folder import MODEL_MARKER
from attnmeta.fewshot.source import open_classifier, source_kind
from attnmeta.runs.folder import MARKER


def test_a_folder_with_the_model_marker_is_a_model_any_other_path_a_run(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / MODEL_MARKER).write_text("")
    (tmp_path / "run").mkdir()
    assert source_kind(tmp_path / "model") == "model"
    assert source_kind(str(tmp_path / "run")) == "run"
    (tmp_path / "step_3.json").write_text("{}")
    assert source_kind(tmp_path / "step_3.json") == "run"


def test_a_builtin_encoder_name_is_an_encoder_unless_a_path_of_that_name_exists(tmp_path,
                                                                                monkeypatch):
    name = next(iter(ENCODERS))
    assert source_kind(name) == "encoder"
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir()
    assert source_kind(name) == "run"  # a path wins, as a file wins over a command's name


def test_neither_a_path_nor_an_encoder_is_one_error_listing_every_encoder(tmp_path):
    with pytest.raises(ModelError) as refused:
        source_kind(tmp_path / "nothing")
    message = str(refused.value)
    assert message.startswith(f"{str(tmp_path / 'nothing')!r} is neither a folder nor a "
                              "built-in encoder: expected a saved model folder")
    assert all(name in message for name in ENCODERS) and "\n" not in message


@pytest.mark.parametrize("make", ["empty folder", "text file"])
def test_open_classifier_refuses_a_path_that_looks_like_no_run(tmp_path, make):
    target = tmp_path / "thing"
    if make == "empty folder":
        target.mkdir()
    else:
        target.write_text("hello")
    with pytest.raises(ModelError, match=r"is neither a saved model \(no \.attnmeta-model\) "
                                         r"nor a run \(no checkpoints/\)"):
        open_classifier(target)


def test_a_folder_with_the_run_marker_is_opened_as_a_run(tmp_path):
    (tmp_path / MARKER).write_text("")
    with pytest.raises(Exception) as refused:  # a run with nothing in it: the run's refusal
        open_classifier(tmp_path)
    assert "is neither a saved model" not in str(refused.value)
