"""attnmeta.tasks.episode: one task, or a batch of tasks, and how batches are cut and
stacked."""

from __future__ import annotations

import torch

from attnmeta.tasks.episode import Episode, collate_episodes


def one(value: float) -> Episode:
    return Episode(torch.full((4, 2), value), torch.tensor([0, 0, 1, 1]),
                   torch.full((2, 2), -value), torch.tensor([1, 0]))


def test_collate_stacks_episodes_and_task_takes_one_back():
    batch = collate_episodes([one(1.0), one(2.0), one(3.0)])
    assert batch.num_tasks == 3 and batch.support_x.shape == (3, 4, 2)
    second = batch.task(1)
    for name in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(second, name), getattr(one(2.0), name))


def test_slice_and_split_cut_along_the_task_dimension_only():
    batch = collate_episodes([one(float(i)) for i in range(5)])
    part = batch.slice(1, 3)
    assert part.num_tasks == 2 and part.support_x[:, 0, 0].tolist() == [1.0, 2.0]
    chunks = batch.split(2)
    assert [c.num_tasks for c in chunks] == [3, 2]
    assert torch.equal(torch.cat([c.query_x for c in chunks]), batch.query_x)


def test_to_moves_every_tensor():
    moved = one(1.0).to("meta")
    assert all(getattr(moved, n).device.type == "meta"
               for n in ("support_x", "support_y", "query_x", "query_y"))
