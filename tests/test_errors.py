"""attnmeta.errors: one family of user-fixable errors. Each kind is an AttnmetaError and the
built-in it refines; the older names are the same classes; and what a person gets wrong at
the lower layers (a data set, a CSV, a weights wheel, a checkpoint, a config value) raises
one of them, in one line, which the command line prints as ``Error: ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from attnmeta import errors
from attnmeta.errors import (AttnmetaError, CheckpointError, ConfigError, DataError,
                             DivergedError, InputError, MissingDataError,
                             MissingDependencyError, ModelError, RunError)

BUILT_INS = {
    errors.ConfigError: (ValueError,), errors.DataError: (ValueError,),
    errors.MissingDataError: (ValueError, FileNotFoundError),
    errors.DownloadError: (ValueError, OSError),
    errors.InputError: (ValueError,), errors.ModelError: (ValueError,),
    errors.RunError: (ValueError,), errors.CheckpointError: (ValueError,),
    errors.MissingDependencyError: (ImportError,),
    errors.DivergedError: (FloatingPointError,),
}


def test_every_kind_is_in_the_family_and_its_built_in():
    assert set(BUILT_INS) == {getattr(errors, name) for name in errors.__all__} - {AttnmetaError}
    for kind, built_ins in BUILT_INS.items():
        assert issubclass(kind, AttnmetaError), kind
        for built_in in built_ins:  # code that caught the built-in before still does
            assert issubclass(kind, built_in), (kind, built_in)


def test_the_older_names_are_the_family():
    from attnmeta.checkpoint import CheckpointError as OldCheckpointError
    from attnmeta.fewshot.encoders import UnknownEncoderError
    from attnmeta.fewshot.inputs import InputError as OldInputError
    from attnmeta.fewshot.inputs import ModelError as OldModelError
    from attnmeta.models.wheel_weights import MissingWeightsError
    from attnmeta.train import NonFiniteLossError

    assert OldCheckpointError is CheckpointError
    assert OldInputError is InputError and OldModelError is ModelError
    assert issubclass(MissingWeightsError, MissingDependencyError)
    assert issubclass(UnknownEncoderError, InputError)
    assert issubclass(NonFiniteLossError, DivergedError)


# --------------------------------------------------------------------------- user errors


def missing_data_root(tmp: Path) -> None:
    from attnmeta.tasks.omniglot_files import find_omniglot_dir

    find_omniglot_dir(tmp / "absent")


def no_omniglot_under_the_root(tmp: Path) -> None:
    from attnmeta.tasks.omniglot_files import find_omniglot_dir

    find_omniglot_dir(tmp)


def malformed_support_csv(tmp: Path) -> None:
    from attnmeta.fewshot.inputs import read_support

    path = tmp / "support.csv"
    path.write_text("text,label\nhello,greeting\nbye\n")  # the last row lacks its label
    read_support(path, "text")


def malformed_sentences_data_set(tmp: Path) -> None:
    from attnmeta.tasks.text import load_sentences

    (tmp / "train.csv").write_text("text,label\nhello,\n")
    load_sentences(tmp, "train")


def emoji_json_that_is_not_json(tmp: Path) -> None:
    from attnmeta.tasks.emoji import read_emoji

    (tmp / "emoji.json").write_text("[{")
    read_emoji(tmp)


def missing_weights_wheel(tmp: Path) -> None:
    from attnmeta.models.wheel_weights import wheel_file

    wheel_file("attnmeta_no_such_weights_wheel", "weights/model.pt", "images", "a test")


def corrupt_checkpoint(tmp: Path) -> None:
    from attnmeta.checkpoint import read_checkpoint_record

    path = tmp / "step_3.json"
    path.write_text('{"step": 3, "config": ')  # cut off mid-write
    read_checkpoint_record(path)


def unknown_encoder(tmp: Path) -> None:
    from attnmeta.fewshot.encoders import encoder_entry

    encoder_entry("no-such-encoder")


def episodes_larger_than_the_split(tmp: Path) -> None:
    from attnmeta.tasks.splits import check_episode_shape

    class Split:
        items, labels, class_names = torch.zeros(4, 1), torch.tensor([0, 0, 1, 1]), ["a", "b"]
        split = "test"

    check_episode_shape(Split(), 5, 1, 1, "data.test")


def unknown_config_key(tmp: Path) -> None:
    from attnmeta.runs.config import config_from_dict

    config_from_dict({"no_such_key": 1})


def a_weights_file_that_is_not_weights(tmp: Path) -> None:
    from attnmeta.models.pretrained import read_state_dict

    path = tmp / "weights.pt"
    path.write_bytes(b"not a torch file")
    read_state_dict(path)


USER_ERRORS: list[tuple[Callable[[Path], None], type]] = [
    (missing_data_root, MissingDataError), (no_omniglot_under_the_root, MissingDataError),
    (malformed_support_csv, InputError), (malformed_sentences_data_set, DataError),
    (emoji_json_that_is_not_json, DataError), (missing_weights_wheel, MissingDependencyError),
    (corrupt_checkpoint, CheckpointError), (unknown_encoder, InputError),
    (episodes_larger_than_the_split, ConfigError), (unknown_config_key, ConfigError),
    (a_weights_file_that_is_not_weights, InputError),
]


@pytest.mark.parametrize("cause, kind", USER_ERRORS, ids=[c.__name__ for c, _ in USER_ERRORS])
def test_a_user_error_is_one_line_of_the_family(tmp_path, monkeypatch, cause, kind):
    monkeypatch.delenv("ATTNMETA_DATA", raising=False)
    with pytest.raises(AttnmetaError) as info:
        cause(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, kind), repr(info.value)
    assert message.strip() and "\n" not in message, repr(message)


def test_a_bug_is_not_in_the_family():
    """A programmer's precondition stays a plain ValueError: a traceback, not an Error: line."""
    from attnmeta.attention import scaled_dot_product_attention

    with pytest.raises(ValueError) as info:
        scaled_dot_product_attention(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4),
                                     torch.zeros(1, 2, 4))
    assert not isinstance(info.value, AttnmetaError)


def test_run_error_is_a_kind():
    assert issubclass(RunError, AttnmetaError)
