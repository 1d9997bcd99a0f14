"""What the relational learners cost against the pooled ones (issue 31, item 3): FLOPs
counted by ``torch.utils.flop_counter``, time measured on one thread, memory of what a
frozen run caches, for one Omniglot episode over Conv4 at 28x28 (64 channels).

    OMP_NUM_THREADS=1 python benchmarks/relational_cost.py [--out benchmarks/results]

Each learner is built by ``attnmeta.runs.build.build_learner`` from the config the shipped
runs use (``configs/omniglot/*``: Conv4, ``model.norm: running``, the learner's keys as
there), with random weights (the cost does not depend on them). Per episode of N-way 1-shot
with 15 queries a class (the Vinyals test shape) and 5 queries at 20-way (the training
shape of the Lake configs):

- ``head`` FLOPs and ms: the learner over features already computed (``logits_from_features``
  on the pooled ``[N, 64]`` or the flattened tokens ``[N, 9·64]``): what a frozen run pays
  per training episode (forward and backward) and per test episode (forward);
- ``end to end`` FLOPs and ms: a training step with the encoder (``training_step``'s loss,
  backward): what ``model.freeze: false`` pays;
- cached bytes per image: what a frozen run stores per image (float32).

The times are the best of 5 after a warm-up (``attnmeta.speed.harness.best_seconds``);
machine-specific, so they live here and not in docstrings. Writes ``relational_cost.json``
and ``relational_cost.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from attnmeta.files import atomic_write_bytes
from attnmeta.machine import describe_machine
from attnmeta.runs.build import build_learner
from attnmeta.runs.config import config_from_dict
from attnmeta.speed.harness import best_seconds, count_flops
from attnmeta.tasks.episode import Episode, collate_episodes

# (name in the table, learner section, reads tokens); keys as the shipped configs
LEARNERS = (
    ("ProtoNet (pooled)", {"name": "protonet", "distance": "cosine", "temperature": 0.1},
     False),
    ("in-context + ELMES (pooled)", {"name": "incontext"}, False),
    ("CrossTransformer (tokens)", {"name": "cross_transformer", "key_dim": 64,
                                   "value_dim": 64}, True),
    ("PairMatcher (tokens)", {"name": "pair_matcher", "width": 64, "heads": 4}, True),
    ("in-context over tokens", {"name": "incontext_spatial"}, True),
)
SHAPES = ((5, 1, 15), (20, 1, 15), (20, 1, 5))


def learner_for(section: dict, n_way: int):
    config = config_from_dict({
        "name": "cost", "seed": 0,
        "data": {"dataset": "omniglot", "image_size": 28,
                 "train": {"n_way": n_way, "k_shot": 1, "q_query": 1},
                 "test": {"n_way": n_way, "k_shot": 1, "q_query": 1}},
        "model": {"backbone": "conv4", "hidden": 64, "norm": "running"},
        "learner": section})
    torch.manual_seed(0)
    return build_learner(config)


def episode(n_way: int, k_shot: int, q_query: int) -> Episode:
    generator = torch.Generator().manual_seed(0)
    support_y = torch.arange(n_way).repeat_interleave(k_shot)
    query_y = torch.arange(n_way).repeat_interleave(q_query)
    return Episode(torch.rand(n_way * k_shot, 1, 28, 28, generator=generator), support_y,
                   torch.rand(n_way * q_query, 1, 28, 28, generator=generator), query_y)


def measure(section: dict, n_way: int, k_shot: int, q_query: int) -> dict:
    learner = learner_for(section, n_way).train()
    task = episode(n_way, k_shot, q_query)
    batch = collate_episodes([task])
    encoder = learner.encoder
    with torch.no_grad():
        support_z, query_z = encoder(task.support_x)[None], encoder(task.query_x)[None]
    support_y = task.support_y[None]

    def head_train() -> None:
        logits = learner.logits_from_features(support_z, support_y, query_z)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), task.query_y)
        if loss.requires_grad:  # prototypes over frozen features have no weights to train
            loss.backward()

    def head_test() -> None:
        with torch.no_grad():
            learner.logits_from_features(support_z, support_y, query_z)

    def end_to_end() -> None:
        learner.training_step(batch).loss.backward()

    return {"feature_width": support_z.shape[-1], "cached_bytes_per_image":
            4 * support_z.shape[-1],
            "head_train_flops": count_flops(head_train), "head_test_flops":
            count_flops(head_test), "end_to_end_flops": count_flops(end_to_end),
            "head_train_ms": 1e3 * best_seconds(head_train),
            "head_test_ms": 1e3 * best_seconds(head_test),
            "end_to_end_ms": 1e3 * best_seconds(end_to_end)}


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# What the relational learners cost against the pooled ones", "",
             f"Command: `{command}`. Conv4 at 28x28, 64 channels (pooled: 64 features an "
             "image; tokens: its 3x3 map before the last pooling, 9 x 64 = 576), random "
             "weights, one episode of N-way 1-shot with Q queries a class. FLOPs counted by "
             "torch.utils.flop_counter (matrix products and convolutions; a multiply-add is "
             "2); ms: best of 5 on one thread. Head: the learner over features already "
             "computed (a frozen run's cost per training / test episode); end to end: one "
             "training step with the encoder (model.freeze: false).", "",
             "| learner | N-way, Q a class | head train MFLOP | head test MFLOP | head train "
             "ms | head test ms | end-to-end step MFLOP | end-to-end ms | cached bytes an "
             "image |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['learner']} | {r['n_way']}, {r['q_query']} | "
            f"{r['head_train_flops'] / 1e6:.2f} | {r['head_test_flops'] / 1e6:.2f} | "
            f"{r['head_train_ms']:.2f} | {r['head_test_ms']:.2f} | "
            f"{r['end_to_end_flops'] / 1e6:.1f} | {r['end_to_end_ms']:.1f} | "
            f"{r['cached_bytes_per_image']:,} |")
    lines += ["", "The ms were measured while two one-thread training runs shared the 2 cores: "
              "compare them within this table, not with other tables.",
              "", f"Machine: {rows[0]['machine']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python " + " ".join(shlex.quote(a) for a in sys.argv)
    rows = []
    for name, section, _ in LEARNERS:
        for n_way, k_shot, q_query in SHAPES:
            row = {"learner": name, "n_way": n_way, "k_shot": k_shot, "q_query": q_query,
                   **measure(section, n_way, k_shot, q_query), "command": command,
                   "machine": describe_machine()}
            print(f"{name} {n_way}w q{q_query}: head {row['head_train_flops'] / 1e6:.2f} "
                  f"MFLOP {row['head_train_ms']:.2f} ms, end to end "
                  f"{row['end_to_end_flops'] / 1e6:.1f} MFLOP {row['end_to_end_ms']:.1f} ms",
                  flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "relational_cost.json", json.dumps(rows, indent=1).encode())
    atomic_write_bytes(args.out / "relational_cost.md", markdown(rows, command).encode())
    print(f"wrote {args.out / 'relational_cost.md'}")


if __name__ == "__main__":
    main()
