"""Two gloo processes, each on half the meta-batch, equal one process on all of it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file

from attnmeta.distributed import DistributedContext, shard_range
from attnmeta.learners import MAML
from attnmeta.models import MLP
from attnmeta.tasks import Episode, SinusoidTasks
from attnmeta.train import meta_train

STEPS, META_BATCH = 3, 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def batches(shard: tuple[int, int] = (0, META_BATCH)):
    tasks = SinusoidTasks(k_shot=5, q_query=5)
    for step in range(STEPS):
        batch = tasks.batch(step, META_BATCH)
        yield Episode(*(t[shard[0]:shard[1]].double() for t in
                        (batch.support_x, batch.support_y, batch.query_x, batch.query_y)))


def make_learner() -> MAML:
    torch.manual_seed(0)
    return MAML(MLP(hidden=(16, 16)).double(), inner_lr=0.05, inner_steps=2, loss_fn=F.mse_loss)


def first_meta_gradient(learner: MAML, batch: Episode) -> list[torch.Tensor]:
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    from attnmeta.distributed import average_gradients

    average_gradients(learner)
    return [p.grad.clone() for p in learner.parameters()]


def worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        shard = shard_range(META_BATCH, DistributedContext(rank, world_size))
        learner = make_learner()
        gradient = first_meta_gradient(learner, next(batches(shard)))
        optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
        meta_train(learner, batches(shard), optimizer, STEPS, progress=False)
        if rank == 0:
            torch.save({"gradient": gradient,
                        "params": [p.detach() for p in learner.parameters()]},
                       Path(out_dir) / "distributed.pt")
        dist.barrier()  # no rank tears its gloo connections down while the other still talks
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    result = torch.load(tmp_path / "distributed.pt")

    learner = make_learner()
    expected_gradient = first_meta_gradient(learner, next(batches()))
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    meta_train(learner, batches(), optimizer, STEPS, progress=False)
    for got, expected in zip(result["gradient"], expected_gradient):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert any(g.abs().max() > 1e-3 for g in expected_gradient)
    for got, expected in zip(result["params"], learner.parameters()):
        torch.testing.assert_close(got, expected.detach(), rtol=1e-9, atol=1e-11)


def sgd_maml_config(data_root: Path):
    """SGD, not Adam: Conv4's conv biases feed batch norm, so their exact gradient is 0 and
    Adam would blow the round-off left by a different summation order up to ±lr steps."""
    from support import tiny_config

    config = tiny_config(data_root, "maml")
    config.train.optimizer, config.train.lr = "sgd", 0.5
    return config


def run_worker(rank: int, world_size: int, port: int, data_root: str, run_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from attnmeta.runs.episodic import train_run

    try:
        train_run(sgd_maml_config(Path(data_root)), Path(run_dir), progress=False)
        dist.barrier()  # no rank tears its gloo connections down while the other still talks
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_train_run_under_two_processes_matches_one(tmp_path, monkeypatch):
    from support import make_image_folder

    from attnmeta.runs.episodic import train_run

    data_root = make_image_folder(tmp_path / "images")
    mp.spawn(run_worker, args=(2, free_port(), str(data_root), str(tmp_path / "two")), nprocs=2,
             join=True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    train_run(sgd_maml_config(data_root), tmp_path / "one", progress=False)
    two = load_file(sorted((tmp_path / "two/checkpoints").glob("*.safetensors"))[-1])
    one = load_file(sorted((tmp_path / "one/checkpoints").glob("*.safetensors"))[-1])
    assert one.keys() == two.keys()
    for key in one:  # float32: the two sums are ordered differently
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    moved = load_file(sorted((tmp_path / "one/checkpoints").glob("*.safetensors"))[0])
    assert any(not torch.equal(moved[k], one[k]) for k in one if k.startswith("model/"))


def test_uneven_shards_are_refused():
    with pytest.raises(ValueError, match="train.meta_batch=5 is not divisible by the 2 processes"):
        shard_range(5, DistributedContext(0, 2))
    assert shard_range(6, DistributedContext(1, 3)) == (2, 4)
