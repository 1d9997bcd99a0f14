"""Long work in bounded memory, with steady progress: ``FewShotClassifier.logits`` reads and
predicts queries a chunk at a time (the same scores as one batch, the model never handed
more than a chunk, a progress call per chunk); images are read into one preallocated batch;
the fitted state is one object a fit swaps whole; the command line's progress lines carry
the time left, at least every PROGRESS_SECONDS, and a short ``predict`` prints none."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attnmeta.cli import main
from attnmeta.fewshot import FewShotClassifier
from attnmeta.fewshot.classifier import QUERY_CHUNK, Fitted
from attnmeta.fewshot.inputs import Preprocessing, images_to_tensor
from attnmeta.runs.episodic import train_run
from support import make_image_folder, tiny_config


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, images) -> Path:
    config = tiny_config(images, "protonet", steps=2)
    config.model.norm, config.train.eval_every = "running", 0
    folder = tmp_path_factory.mktemp("runs") / "protonet"
    train_run(config, folder, progress=False, will_evaluate=False)
    return folder


@pytest.fixture(scope="module")
def queries(images) -> list[Path]:
    return sorted((images / "val").rglob("*.png"))  # 36 images of 6 classes


def fitted(run: Path, images: Path) -> FewShotClassifier:
    return FewShotClassifier.from_run(run).fit(images / "test")


def test_chunked_predictions_equal_one_batch_and_report_each_chunk(run, images, queries):
    model = fitted(run, images)
    whole, examples = model.logits(queries, chunk=len(queries))
    assert whole.shape == (len(queries), 6) and examples.names == [str(q) for q in queries]

    seen, reported = [], []
    real = model._forward.predict_fitted

    def recording(task, query_x):  # what reaches the model: never more than a chunk
        seen.append(len(query_x))
        return real(task, query_x)

    model._forward.predict_fitted = recording
    chunked, again = model.logits(queries, progress=lambda done, total:
                                  reported.append((done, total)), chunk=5)
    assert seen == [5] * 7 + [1]
    assert reported == [(n, 36) for n in (5, 10, 15, 20, 25, 30, 35, 36)]
    assert again.names == examples.names
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    assert model.predict(queries) == [model.class_names[int(i)] for i in whole.argmax(-1)]

    # a folder and a tensor batch are chunked the same way; the default chunk is the bound
    seen.clear()
    folder_scores, _ = model.logits(images / "val", chunk=7)
    torch.testing.assert_close(folder_scores, whole, rtol=0, atol=1e-6)
    assert max(seen) == 7
    query_x, _ = model.query_inputs(queries)
    seen.clear()
    tensor_scores, _ = model.logits(query_x, chunk=10)
    torch.testing.assert_close(tensor_scores, whole, rtol=0, atol=1e-6)
    assert seen == [10, 10, 10, 6]
    seen.clear()
    model.logits(queries * 3)
    assert max(seen) <= QUERY_CHUNK and sum(seen) == 108


def test_images_are_read_into_one_batch_with_a_call_per_image(tmp_path, queries):
    preprocessing = Preprocessing("image", image_size=16, channels=3)
    reported, tally = [], [0]
    batch = images_to_tensor(queries[:5], preprocessing, lambda d, t: reported.append((d, t)),
                             tally=tally)
    assert batch.shape == (5, 3, 16, 16) and batch.is_contiguous()
    assert reported == [(n, 5) for n in range(1, 6)]
    assert tally == [5]  # grey files read as RGB: counted for the caller, not logged
    assert images_to_tensor([], preprocessing).shape == (0, 3, 16, 16)


def test_the_fitted_state_is_one_object_a_fit_replaces_whole(run, images, queries):
    model = FewShotClassifier.from_run(run)
    assert model.class_names == [] and model.fitted.task == {}
    model.fit(images / "test")
    first = model.fitted
    assert isinstance(first, Fitted) and first.class_names == model.class_names
    view = model.pinned()
    labels = view.predict(queries[:6])
    pairs = [(path, "a" if i % 2 else "b") for i, path in enumerate(queries[:6])]
    model.fit(pairs)
    assert model.class_names == ["a", "b"] and model.fitted is not first
    assert first.class_names == sorted(p.name for p in (images / "test").iterdir())
    # the view still answers from the first fit, whole: its classes, tensors, support
    assert view.fitted is first and view.predict(queries[:6]) == labels
    assert view.explain(queries[0]).class_names == first.class_names
    with pytest.raises(Exception):
        first.class_names = ["changed"]  # frozen
    model.steps = 3  # the old attribute names still set, each a whole new state
    assert model.fitted.steps == 3 and model.fitted.class_names == ["a", "b"]


def test_predict_on_the_command_line_streams_a_folder_with_progress(tmp_path, run, images):
    model_dir = tmp_path / "model"
    runner = CliRunner()
    adapted = runner.invoke(main, ["adapt", str(run), "--support", str(images / "test"),
                                   "--out", str(model_dir)])
    assert adapted.exit_code == 0, adapted.output
    assert "read 36/36 (" in adapted.stderr  # the final line, with its time
    quiet = runner.invoke(main, ["predict", str(model_dir), str(images / "val"), "--json"])
    assert quiet.exit_code == 0 and quiet.stderr == ""  # short: no progress by default
    loud = runner.invoke(main, ["predict", str(model_dir), str(images / "val"), "--json",
                                "--progress"])
    assert loud.exit_code == 0 and loud.stdout == quiet.stdout
    assert loud.stderr.splitlines()[-1].startswith("predicted 36/36 (")
