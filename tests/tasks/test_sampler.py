"""FewShotEpisodes over a synthetic data set whose inputs encode their own index."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from attnmeta.tasks import Episode, FewShotEpisodes, collate_episodes

N_CLASSES, PER_CLASS = 10, 8


def synthetic(n_classes: int = N_CLASSES, per_class: int = PER_CLASS):
    """Item i is [i, 100 + label, -i] (float); labels interleave so classes are not contiguous."""
    n = n_classes * per_class
    labels = torch.arange(n) % n_classes
    index = torch.arange(n, dtype=torch.float32)
    items = torch.stack([index, 100.0 + labels, -index], dim=1)
    return items, labels


def item_ids(x: torch.Tensor) -> list[int]:
    ids = x[:, 0].long()
    assert torch.equal(x[:, 2], -x[:, 0])  # the whole item came through intact
    return ids.tolist()


def check_episode(ep: Episode, labels: torch.Tensor, n_way: int, k_shot: int, q_query: int) -> None:
    assert ep.support_x.shape == (n_way * k_shot, 3)
    assert ep.query_x.shape == (n_way * q_query, 3)
    assert ep.support_y.dtype == ep.query_y.dtype == torch.int64
    assert torch.equal(ep.support_y, torch.arange(n_way).repeat_interleave(k_shot))
    assert torch.equal(ep.query_y, torch.arange(n_way).repeat_interleave(q_query))
    s_ids, q_ids = item_ids(ep.support_x), item_ids(ep.query_x)
    assert len(set(s_ids)) == len(s_ids) and len(set(q_ids)) == len(q_ids)
    assert not set(s_ids) & set(q_ids)  # support and query disjoint
    # every item's original class agrees with the encoded one
    assert torch.equal(labels[s_ids] + 100, ep.support_x[:, 1].long())
    assert torch.equal(labels[q_ids] + 100, ep.query_x[:, 1].long())
    originals = []
    for new in range(n_way):
        s_classes = set(labels[s_ids][ep.support_y == new].tolist())
        q_classes = set(labels[q_ids][ep.query_y == new].tolist())
        assert len(s_classes) == 1  # one original class per new label ...
        assert q_classes in (s_classes, set())  # ... the same one in the query set
        originals.append(s_classes.pop())
    assert len(set(originals)) == n_way  # N distinct classes


@pytest.mark.parametrize("n_way,k_shot,q_query", [(5, 1, 3), (3, 2, 6), (10, 4, 4), (2, 3, 0)])
def test_episode_structure(n_way, k_shot, q_query):
    items, labels = synthetic()
    ds = FewShotEpisodes(items, labels, n_way=n_way, k_shot=k_shot, q_query=q_query,
                         num_episodes=30, seed=3)
    assert len(ds) == 30
    for i in range(len(ds)):
        check_episode(ds[i], labels, n_way, k_shot, q_query)


def test_episode_indices_agree_with_items():
    items, labels = synthetic()
    ds = FewShotEpisodes(items, labels, n_way=4, k_shot=2, q_query=3, seed=1)
    support, query = ds.episode_indices(7)
    assert support.shape == (4, 2) and query.shape == (4, 3)
    ep = ds[7]
    assert item_ids(ep.support_x) == support.reshape(-1).tolist()
    assert item_ids(ep.query_x) == query.reshape(-1).tolist()


def test_episodes_cover_all_classes_and_items():
    items, labels = synthetic()
    ds = FewShotEpisodes(items, labels, n_way=3, k_shot=1, q_query=2, num_episodes=300, seed=0)
    seen_items, first_class = set(), []
    for i in range(len(ds)):
        ep = ds[i]
        ids = item_ids(ep.support_x) + item_ids(ep.query_x)
        seen_items.update(ids)
        first_class.append(int(labels[ids[0]]))
    assert seen_items == set(range(N_CLASSES * PER_CLASS))
    # label 0 is not always the smallest original class: the remap follows the random draw
    assert set(first_class) == set(range(N_CLASSES))


def test_reproducible_from_seed_and_index():
    items, labels = synthetic()
    make = lambda seed: FewShotEpisodes(items, labels, n_way=5, k_shot=2, q_query=3,  # noqa: E731
                                        num_episodes=50, seed=seed)
    a, b, c = make(11), make(11), make(12)
    for i in (0, 1, 49):
        ea, eb = a[i], b[i]
        assert torch.equal(ea.support_x, eb.support_x) and torch.equal(ea.query_x, eb.query_x)
        assert torch.equal(ea.support_x, a[i].support_x)  # and stable on repeated access
    # other index or other seed -> other episode
    assert not torch.equal(a[0].support_x, a[1].support_x)
    assert not torch.equal(a[0].support_x, c[0].support_x)
    distinct = {tuple(item_ids(a[i].support_x)) for i in range(50)}
    assert len(distinct) == 50
    # access order does not matter (no shared generator state)
    fresh = make(11)
    late_first = fresh[49]
    assert torch.equal(late_first.query_x, a[49].query_x)


def test_index_out_of_range():
    items, labels = synthetic()
    ds = FewShotEpisodes(items, labels, num_episodes=4, n_way=2, k_shot=1, q_query=1)
    ds[3]
    with pytest.raises(IndexError, match="episode 4 out of range"):
        ds[4]
    with pytest.raises(IndexError):
        ds[-1]


def test_pair_dataset_equals_items_with_labels():
    items, labels = synthetic()
    kwargs = dict(n_way=4, k_shot=2, q_query=2, num_episodes=20, seed=5)
    separate = FewShotEpisodes(items, labels, **kwargs)
    paired = FewShotEpisodes(TensorDataset(items, labels), **kwargs)  # y are 0-d tensors
    python_pairs = FewShotEpisodes([(x.numpy(), int(y)) for x, y in zip(items, labels)], **kwargs)
    as_list = FewShotEpisodes(list(items.numpy()), labels.tolist(), **kwargs)
    for i in range(20):
        ref = separate[i]
        check_episode(ref, labels, 4, 2, 2)
        for other in (paired[i], python_pairs[i], as_list[i]):
            assert torch.equal(other.support_x, ref.support_x)
            assert torch.equal(other.query_x, ref.query_x)
            assert torch.equal(other.support_y, ref.support_y)
            assert torch.equal(other.query_y, ref.query_y)


def test_string_labels_and_transform():
    items, labels = synthetic()
    names = [f"class-{int(y)}" for y in labels]
    ds = FewShotEpisodes(items, names, n_way=3, k_shot=2, q_query=1, seed=2,
                         transform=lambda x: x * 2)
    plain = FewShotEpisodes(items, labels, n_way=3, k_shot=2, q_query=1, seed=2)
    ep = ds[0]
    torch.testing.assert_close(ep.support_x, 2 * plain[0].support_x, rtol=0, atol=0)
    torch.testing.assert_close(ep.query_x, 2 * plain[0].query_x, rtol=0, atol=0)


def test_dataloader_with_workers_matches_in_process():
    items, labels = synthetic()
    ds = FewShotEpisodes(TensorDataset(items, labels), n_way=5, k_shot=1, q_query=2,
                         num_episodes=12, seed=9)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_episodes)
    batches = list(loader)
    assert len(batches) == 3
    for b, batch in enumerate(batches):
        assert isinstance(batch, Episode)
        assert batch.num_tasks == 4
        assert batch.support_x.shape == (4, 5, 3) and batch.query_x.shape == (4, 10, 3)
        assert batch.support_y.shape == (4, 5) and batch.query_y.shape == (4, 10)
        expected = collate_episodes([ds[4 * b + t] for t in range(4)])
        for name in ("support_x", "support_y", "query_x", "query_y"):
            assert torch.equal(getattr(batch, name), getattr(expected, name))


def test_n_way_too_large():
    items, labels = synthetic()
    with pytest.raises(ValueError, match=r"n_way=11\b.*\b10 classes"):
        FewShotEpisodes(items, labels, n_way=11, k_shot=1, q_query=1)
    FewShotEpisodes(items, labels, n_way=10, k_shot=1, q_query=1)  # exactly enough is fine


def test_class_too_small():
    items, labels = synthetic()
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[(labels == 3).nonzero().flatten()[4:]] = False  # class 3 keeps 4 of its 8 examples
    items, labels = items[keep], labels[keep]
    items[:, 0] = torch.arange(len(items), dtype=torch.float32)  # re-encode the positions
    items[:, 2] = -items[:, 0]
    with pytest.raises(ValueError, match=r"\b5\b.*\b4 examples of class 3\b"):
        FewShotEpisodes(items, labels, n_way=2, k_shot=2, q_query=3)
    with pytest.raises(ValueError, match=r"4 examples of class 'c3'"):
        FewShotEpisodes(items, [f"c{int(y)}" for y in labels], n_way=2, k_shot=1, q_query=4)
    ds = FewShotEpisodes(items, labels, n_way=10, k_shot=2, q_query=2, num_episodes=5)
    for i in range(5):
        check_episode(ds[i], labels, 10, 2, 2)


@pytest.mark.parametrize("kwargs,name", [
    (dict(k_shot=0), "k_shot=0"),
    (dict(n_way=0), "n_way=0"),
    (dict(q_query=-1), "q_query=-1"),
    (dict(k_shot=1.5), "k_shot=1.5"),
    (dict(num_episodes=-1), "num_episodes=-1"),
])
def test_invalid_sizes(kwargs, name):
    items, labels = synthetic()
    with pytest.raises(ValueError, match=name):
        FewShotEpisodes(items, labels, **kwargs)


def test_labels_length_mismatch():
    items, labels = synthetic()
    with pytest.raises(ValueError, match=r"79 labels for 80 items"):
        FewShotEpisodes(items, labels[:-1])


def test_episode_collate_split_task_round_trip():
    items, labels = synthetic()
    ds = FewShotEpisodes(items, labels, n_way=3, k_shot=2, q_query=1, num_episodes=5, seed=4)
    episodes = [ds[i] for i in range(5)]
    batch = collate_episodes(episodes)
    assert batch.num_tasks == 5
    assert batch.support_x.shape == (5, 6, 3) and batch.query_y.shape == (5, 3)
    for i, ep in enumerate(episodes):
        task = batch.task(i)
        for name in ("support_x", "support_y", "query_x", "query_y"):
            assert torch.equal(getattr(task, name), getattr(ep, name))
    parts = batch.split(2)
    assert [p.num_tasks for p in parts] == [3, 2]
    rebuilt = collate_episodes([p.task(j) for p in parts for j in range(p.num_tasks)])
    moved = batch.to("cpu")
    for name in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(rebuilt, name), getattr(batch, name))
        assert torch.equal(getattr(moved, name), getattr(batch, name))
    assert [p.num_tasks for p in batch.split(4)] == [2, 1, 1, 1]  # near-equal, exactly 4 parts
    assert len(batch.split(5)) == 5 and all(p.num_tasks == 1 for p in batch.split(5))


# ------------------------------------------------------------------ within-group episodes
GROUP_OF = ["a", "a", "a", "b", "b", "b", "b", "c", "c", "d"]  # class -> group; c, d too small


def test_every_episode_draws_its_classes_from_one_group():
    items, labels = synthetic()
    episodes = FewShotEpisodes(items, labels, n_way=3, k_shot=1, q_query=2, num_episodes=200,
                               seed=4, class_groups=GROUP_OF)
    seen = set()
    for i in range(len(episodes)):
        episode = episodes[i]
        check_episode(episode, labels, 3, 1, 2)
        classes = labels[item_ids(episode.support_x)].tolist()
        groups = {GROUP_OF[c] for c in classes}
        assert len(groups) == 1
        seen |= groups
    assert seen == {"a", "b"}  # groups with fewer than n_way classes are never drawn
    # still a function of (seed, i) only
    again = FewShotEpisodes(items, labels, n_way=3, k_shot=1, q_query=2, num_episodes=200,
                            seed=4, class_groups=dict(enumerate(GROUP_OF)))
    for i in (0, 17, 199):
        assert torch.equal(again[i].support_x, episodes[i].support_x)
        assert torch.equal(again[i].query_x, episodes[i].query_x)


def test_no_group_large_enough_is_one_line():
    items, labels = synthetic()
    with pytest.raises(ValueError) as excinfo:
        FewShotEpisodes(items, labels, n_way=5, k_shot=1, q_query=1, class_groups=GROUP_OF)
    assert str(excinfo.value) == ("n_way=5 exceeds the 4 classes of the largest of the 4 "
                                  "class groups: expected n_way <= 4")
