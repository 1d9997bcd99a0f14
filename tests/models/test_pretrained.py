"""attnmeta.models.pretrained: weights files read and loaded strictly but for a backbone's
own keys (a timm backbone's pretrained parts: test_timm_backbone.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from attnmeta.errors import InputError
from attnmeta.models.pretrained import FREE_KEYS, load_pretrained, read_state_dict, state_mismatch


class Backbone(nn.Module):
    def __init__(self, out_dim: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(4, 2)
        self.norm = nn.BatchNorm1d(2)
        self.head = nn.Linear(2, out_dim)


def test_a_state_dict_reads_back_from_safetensors_torch_and_a_nested_checkpoint(tmp_path):
    state = {"a.weight": torch.randn(2, 3), "b": torch.arange(4)}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.pt")
    torch.save({"model": state}, tmp_path / "model.bin")
    for name in ("w.safetensors", "w.pth", "ckpt.pt", "model.bin"):
        read = read_state_dict(tmp_path / name)
        assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)


def test_what_is_no_state_dict_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.pth does not exist"):
        read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError, match=r"is a folder"):
        read_state_dict(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match=r"junk\.safetensors cannot be read as a safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(InputError, match=r"list\.pt holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_state_mismatch_names_missing_unexpected_and_reshaped_keys():
    own = Backbone().state_dict()
    assert state_mismatch(own, dict(own)) == ""
    fitting = {k: v for k, v in own.items()
               if not k.startswith(FREE_KEYS) and not k.endswith("num_batches_tracked")}
    assert state_mismatch(own, fitting) == ""  # the head and the step counter are free
    bad = dict(fitting, extra=torch.zeros(1), **{"body.bias": torch.zeros(5)})
    del bad["norm.weight"]
    assert state_mismatch(own, bad) == ("missing ['norm.weight']; unexpected ['extra']; shape "
                                        "differs for body.bias ([5] there, [2] here)")


def test_load_pretrained_loads_all_but_the_head(tmp_path):
    torch.manual_seed(0)
    source, target = Backbone(out_dim=10), Backbone(out_dim=3)
    head_before = target.head.weight.clone()
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    assert load_pretrained(target, tmp_path / "w.safetensors") is target
    assert torch.equal(target.body.weight, source.body.weight)
    assert torch.equal(target.norm.running_var, source.norm.running_var)
    assert torch.equal(target.head.weight, head_before)  # sized for another n_way: kept
    other = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(InputError, match=r"w\.safetensors does not fit the Sequential backbone: "
                                         r"missing \['0\.bias', '0\.weight'\]"):
        load_pretrained(other, tmp_path / "w.safetensors")
