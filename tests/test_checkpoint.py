"""Checkpoints: a round trip restores everything; damaged, edited or half-written files
end in one-line CheckpointErrors naming the file; a damaged newest checkpoint is skipped."""

from __future__ import annotations

import errno
import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

import attnmeta.checkpoint as checkpoint
from attnmeta.checkpoint import (CheckpointError, find_latest_checkpoint, latest_checkpoint,
                                 load_checkpoint, read_checkpoint_record, resolve_checkpoint,
                                 save_checkpoint)
from attnmeta.files import file_digest

CONFIG = {"name": "tiny", "learner": {"name": "linear"}, "train": {"lr": 0.1}}


def trained(seed: int = 0, steps: int = 2) -> tuple[nn.Linear, torch.optim.Adam]:
    """A tiny model and an Adam optimiser with state (moments, step) to checkpoint."""
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
    return model, optimizer


def save(run, step, keep=5, seed=0):
    model, optimizer = trained(seed)
    return save_checkpoint(run, step, model, optimizer, CONFIG, keep=keep,
                           extra={"elapsed_s": 1.5, "command": "attnmeta train x.yaml"})


def rebind(json_path, **changes):
    """Edit a record and recompute its record_sha256, as a careful forger would."""
    record = json.loads(json_path.read_text())
    record.update(changes)
    record["record_sha256"] = checkpoint._record_digest(record)
    json_path.write_text(json.dumps(record))


def raises(path, match, call, *args):
    """``call(*args)`` raises exactly CheckpointError, on one line naming ``path``."""
    with pytest.raises(CheckpointError, match=match) as caught:
        call(*args)
    message = str(caught.value)
    assert type(caught.value) is CheckpointError
    assert str(path) in message and "\n" not in message
    return message


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, optimizer = trained()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    json_path = save_checkpoint(tmp_path, 12, model, optimizer, CONFIG, extra={"elapsed_s": 2.5})
    assert json_path == tmp_path / "checkpoints" / "step_0000012.json"
    after_save = torch.rand(3), np.random.rand(3), random.random()

    fresh = nn.Linear(3, 2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.5)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    record = load_checkpoint(tmp_path, fresh, fresh_optimizer, restore_rng=True)
    assert torch.equal(torch.rand(3), after_save[0])
    assert np.array_equal(np.random.rand(3), after_save[1]) and random.random() == after_save[2]
    assert record["step"] == 12 and record["config"] == CONFIG and record["elapsed_s"] == 2.5
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value)
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert loaded["param_groups"][0]["lr"] == 0.1
    for param_id, entries in saved["state"].items():
        for key, value in entries.items():
            assert torch.equal(loaded["state"][param_id][key], value), key
    assert read_checkpoint_record(json_path) == record


@pytest.mark.parametrize("content, match", [
    (b'{"step": 1, "config": {"na\xff\xfeme": 1}}', "is not UTF-8 text"),
    (b'{"step": 1, "config": ', "is not valid JSON .* at line 1 column 23"),
    (b"[]", "holds a JSON array, not an object; expected an object with the keys step, config"),
    (b'"step"', "holds a JSON string"),
    (b"3.5", "holds a JSON number"),
    (b"[" * 100_000, "is JSON nested too deeply"),
])
def test_unreadable_records_are_refused(tmp_path, content, match):
    json_path = save(tmp_path, 1)
    json_path.write_bytes(content)
    raises(json_path, match, read_checkpoint_record, json_path)
    raises(json_path, match, load_checkpoint, json_path, nn.Linear(3, 2))


@pytest.mark.parametrize("key", ["step", "config", "rng", "weights_sha256", "optimizer"])
def test_a_missing_key_is_named(tmp_path, key):
    json_path = save(tmp_path, 1)
    record = json.loads(json_path.read_text())
    del record[key]
    json_path.write_text(json.dumps(record))
    raises(json_path, f"lacks the key '{key}'", read_checkpoint_record, json_path)


def test_an_empty_object_names_every_missing_key(tmp_path):
    json_path = save(tmp_path, 1)
    json_path.write_text("{}")
    message = raises(json_path, "lacks the keys", read_checkpoint_record, json_path)
    assert "'step', 'config', 'optimizer', 'rng', 'weights_sha256'" in message


@pytest.mark.parametrize("changes", [{"step": 999}, {"step": 10}, {"config": {"name": "x"}},
                                     {"elapsed_s": 0.0}, {"record_sha256": "0" * 64}])
def test_an_edited_record_is_refused(tmp_path, changes):
    json_path = save(tmp_path, 500)
    record = json.loads(json_path.read_text())
    record.update(changes)
    json_path.write_text(json.dumps(record, indent=1))
    raises(json_path, "was edited or is corrupt", load_checkpoint, json_path, nn.Linear(3, 2))


def test_a_record_of_another_step_than_its_name_is_refused(tmp_path):
    json_path = save(tmp_path, 500)
    rebind(json_path, step=999)
    raises(json_path, "records step 999, but its name says step 500",
           read_checkpoint_record, json_path)


def test_a_record_of_the_older_format_is_refused(tmp_path):
    json_path = save(tmp_path, 1)
    record = json.loads(json_path.read_text())
    del record["record_sha256"]
    json_path.write_text(json.dumps(record))
    raises(json_path, "no record_sha256: it is in the older format", read_checkpoint_record,
           json_path)


def test_a_value_of_the_wrong_type_is_refused(tmp_path):
    json_path = save(tmp_path, 1)
    rebind(json_path, config=[1, 2])
    raises(json_path, "wrong type", read_checkpoint_record, json_path)


def test_truncated_weights_with_a_forged_sha256_are_refused(tmp_path, monkeypatch):
    json_path = save(tmp_path, 1)
    weights = json_path.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-24])
    rebind(json_path, weights_sha256=file_digest(weights))
    raises(weights, "cannot read .*expected a complete safetensors file",
           load_checkpoint, json_path, nn.Linear(3, 2))
    assert find_latest_checkpoint(tmp_path)[0] is None
    # Whatever safetensors raises past the header check is wrapped too, on one line.
    monkeypatch.setattr(checkpoint, "_check_weights", lambda json_path, record: weights)
    monkeypatch.setattr(checkpoint, "load_file",
                        _raise(checkpoint.SafetensorError("Error while\n deserializing")))
    assert "(Error while deserializing)" in raises(weights, "cannot read checkpoint weights",
                                                   load_checkpoint, json_path, nn.Linear(3, 2))


def _raise(error):
    def fail(*args, **kwargs):
        raise error
    return fail


def test_weights_that_differ_from_their_sha256_are_refused(tmp_path):
    json_path = save(tmp_path, 1)
    weights = json_path.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    raises(weights, "do not match the sha256 in step_0000001.json", load_checkpoint,
           json_path, nn.Linear(3, 2))
    weights.unlink()
    raises(weights, "are missing", load_checkpoint, json_path, nn.Linear(3, 2))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    first, second, third = (save(tmp_path, step, seed=step) for step in (1, 2, 3))
    weights = third.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:100])  # killed while copying, say
    second.write_text(second.read_text()[:50])
    found, skipped = find_latest_checkpoint(tmp_path)
    assert found == first
    assert len(skipped) == 2
    assert str(weights) in skipped[0] and "do not match the sha256" in skipped[0]
    assert str(second) in skipped[1] and "not valid JSON" in skipped[1]
    assert latest_checkpoint(tmp_path) == first
    assert resolve_checkpoint(tmp_path) == resolve_checkpoint(tmp_path / "checkpoints") == first
    model = nn.Linear(3, 2)
    assert load_checkpoint(tmp_path, model)["step"] == 1
    assert torch.equal(model.weight, trained(seed=1)[0].weight)
    # A file named explicitly is used as it is, and refused when loaded.
    assert resolve_checkpoint(third) == third
    raises(weights, "do not match the sha256", load_checkpoint, third, nn.Linear(3, 2))


def test_a_folder_of_damaged_checkpoints_is_refused(tmp_path):
    json_path = save(tmp_path, 1)
    json_path.with_suffix(".safetensors").unlink()
    assert find_latest_checkpoint(tmp_path) == (None, [
        f"skipped a damaged checkpoint: checkpoint weights {json_path.with_suffix('.safetensors')}"
        f" are missing; expected them beside {json_path.name}"])
    assert find_latest_checkpoint(tmp_path / "nothing here") == (None, [])
    raises(tmp_path, "no usable checkpoint in .*1 damaged: .*are missing", resolve_checkpoint,
           tmp_path)


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    for step in (1, 2, 4):
        save(tmp_path, step, keep=0)
    folder = tmp_path / "checkpoints"
    (folder / "step_0000004.json").write_text("{")  # damaged: step 2 is the one kept
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(checkpoint, "save_file",
                        _raise(OSError(errno.ENOSPC, "No space left on device")))
    message = raises(folder / "step_0000003.json",
                     "could not save checkpoint .*No space left on device.*: the previous "
                     "checkpoint step_0000002.json is kept", save, tmp_path, 3, 1)
    assert "expected a writable folder with free space" in message
    # Nothing pruned (keep=1 would leave one), nothing replaced, no .tmp left.
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("step", [1, 2])
def test_a_failed_record_write_replaces_nothing(tmp_path, monkeypatch, step):
    """Also when re-saving the same step: both files are complete before either is renamed."""
    first = save(tmp_path, 1, keep=1)
    before = {p.name: p.read_bytes() for p in first.parent.iterdir()}
    monkeypatch.setattr(checkpoint, "write_synced",
                        _raise(OSError(errno.ENOSPC, "No space left on device")))
    raises(tmp_path / "checkpoints" / f"step_{step:07d}.json", "No space left on device",
           save, tmp_path, step, 1, 5)
    assert {p.name: p.read_bytes() for p in first.parent.iterdir()} == before
    assert find_latest_checkpoint(tmp_path) == (first, [])


def test_a_failed_record_rename_leaves_no_orphan_weights(tmp_path, monkeypatch):
    first = save(tmp_path, 1)
    before = {p.name: p.read_bytes() for p in first.parent.iterdir()}
    replace = os.replace

    def replace_but_not_records(source, target):
        if str(target).endswith(".json"):
            raise OSError(errno.EIO, "Input/output error")
        replace(source, target)

    monkeypatch.setattr(os, "replace", replace_but_not_records)
    raises(tmp_path / "checkpoints" / "step_0000002.json",
           "Input/output error.*the previous checkpoint step_0000001.json is kept",
           save, tmp_path, 2)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in first.parent.iterdir()} == before
    assert find_latest_checkpoint(tmp_path) == (first, [])


def test_a_new_folder_that_cannot_be_written_is_reported(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    raises(tmp_path / "checkpoints" / "step_0000001.json", "no checkpoint was written",
           save, tmp_path, 1)


def test_saving_removes_only_stale_checkpoint_temporaries(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = [folder / ".step_0000003.json.k2j4l1.tmp", folder / ".step_0000003.safetensors.x.tmp"]
    others = [folder / ".notes.txt.a8d.tmp", folder / "step_0000003.tmp",
              tmp_path / ".step_1.x.tmp"]
    for path in stale + others:
        path.write_text("half-written")
    save(tmp_path, 4)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)


def test_old_checkpoints_are_pruned_after_the_new_one_is_written(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_0000002.json", "step_0000002.safetensors",
        "step_0000003.json", "step_0000003.safetensors"]


def test_pruning_keeps_the_new_checkpoint_under_a_damaged_newer_one(tmp_path):
    """A resume from step 1 past a damaged step 5 must not delete what it just wrote."""
    save(tmp_path, 1, keep=1)
    damaged = save(tmp_path, 5, keep=0)
    damaged.write_text("{")
    second = save(tmp_path, 2, keep=1)
    assert sorted(p.name for p in second.parent.glob("*.json")) == [second.name, damaged.name]
    assert find_latest_checkpoint(tmp_path)[0] == second


def test_steps_are_ordered_by_number(tmp_path):
    save(tmp_path, 9_999_999)
    newest = save(tmp_path, 10_000_000)
    assert newest.name == "step_10000000.json"
    assert latest_checkpoint(tmp_path) == newest


def test_a_record_is_read_without_the_tensors(tmp_path, monkeypatch):
    json_path = save(tmp_path, 3)
    json_path.with_suffix(".safetensors").unlink()
    monkeypatch.setattr(checkpoint, "load_file", _raise(AssertionError("loaded tensors")))
    record = read_checkpoint_record(json_path)
    assert record["config"] == CONFIG and record["command"] == "attnmeta train x.yaml"


def test_a_checkpoint_of_another_model_is_refused_with_the_key_names(tmp_path):
    json_path = save(tmp_path, 1)
    message = raises(json_path, r"holds a different model \(learner 'linear'\)",
                     load_checkpoint, json_path, nn.Linear(4, 2))
    assert "shape differs for ['weight']" in message
    message = raises(json_path, "different model", load_checkpoint, json_path,
                     nn.Sequential(nn.Linear(3, 2)))
    assert "missing ['0.bias', '0.weight']" in message
    assert "unexpected ['bias', 'weight']" in message


def test_optimiser_state_of_another_optimiser_is_refused(tmp_path):
    json_path = save(tmp_path, 1)
    model = nn.Linear(3, 2)
    two_groups = torch.optim.Adam([{"params": [model.weight]}, {"params": [model.bias]}])
    raises(json_path, "optimiser state that does not fit this optimiser", load_checkpoint,
           json_path, model, two_groups)
