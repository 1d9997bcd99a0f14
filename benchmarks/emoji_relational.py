"""Cross-style emoji over EfficientNet-Lite0's 7x7 token maps (issue 31): a CrossTransformer
(Doersch, Gupta & Zisserman, NeurIPS 2020) against the pooled learners of
``benchmarks/emoji.py``, 20-way 1-shot, on the same seeded TEST episodes, paired.

    OMP_NUM_THREADS=1 ATTNMETA_DATA=/work/shared/data python benchmarks/emoji_relational.py \\
        [--episodes 1000] [--seed 1234] [--train-minutes 20] [--resume] [--retrain]

The episodes are ``emoji.py``'s: TEST classes only (404), support in one style, one query
per class (its image in the other style), both directions, 1000 episodes each with seed
1234; the token splits have the pooled splits' rows, so each row below reads the very same
episodes. Rows:

(a) centred cosine prototypes over the pooled Lite0 features (``emoji.py``'s row (a),
    what ``attnmeta adapt efficientnet-lite0`` fits);
(b) ``emoji.py``'s meta-trained attention head over the pooled features
    (``runs/emoji_head``; run ``benchmarks/emoji.py`` first);
(c) row (d)'s CrossTransformer before training (its random key and value heads at
    initialisation, seed 0): what the token matching gives with no training at all. (With
    identity heads on the raw tokens it read 37.8% on 20 VAL episodes, far below the
    prototypes: the raw tokens are neither centred nor normalised, and a few large
    channels decide the softmax; that variant costs 16 s per 20 episodes and is not run.)
(d) the CrossTransformer meta-trained over the cached tokens: Dropout(0.5) -> LayerNorm(1280)
    on each token (the input regularisation ``emoji.py``'s head needed), key and value
    heads 1280 -> 128 (the paper's widths), one head; trained on the TRAIN classes'
    cross-style episodes (``emoji.training_batches``: 5w1s, 20w1s, 5w5s and both directions
    in turn, 4 tasks a step), AdamW lr 3e-4, weight decay 1e-4, gradient clip 1, for a
    wall-clock budget on one thread, scored every 300 steps on the 400 fixed VAL-class
    20-way 1-shot episodes and the best weights kept (``emoji.select_on_val``).

The trained head is saved to ``runs/emoji_cross_transformer/`` (not committed). ``--resume``
keeps rows already in ``emoji_relational.json`` made by the same saved head. Writes the JSON
after every row, then ``emoji_relational.md`` and ``emoji_relational.png``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emoji import (DIRECTIONS, base_only, episode_values, file_sha256, load_head,  # noqa: E402
                   parse_arguments, prototypes_learner, select_on_val, training_batches,
                   val_score)
from frozen_features import emoji_features, weights_sha256  # noqa: E402

from attnmeta.files import atomic_write_bytes  # noqa: E402
from attnmeta.learners.cross_transformer import CrossTransformer  # noqa: E402
from attnmeta.machine import describe_machine  # noqa: E402
from attnmeta.metrics import paired_difference, summarize  # noqa: E402

GRID, TOKEN_DIM = (7, 7), 1280
HEAD_DIR = Path(__file__).resolve().parent.parent / "runs" / "emoji_cross_transformer"
CONFIG = {"input_dropout": 0.5, "key_dim": 128, "value_dim": 128, "heads": 1,
          "temperature": 1.0, "lr": 3e-4, "weight_decay": 1e-4, "meta_batch": 4,
          "val_every": 300}
# [Q·L × S·L] scores and [N, Q·L, d_v] prototypes a task: a few tasks at a time
EVAL_BATCH = 4
METHODS = (("prototypes", "Lite0 prototypes, centred (pooled)"),
           ("head", "attention head (pooled, meta-trained)"),
           ("ct_untrained", "CrossTransformer before training (tokens)"),
           ("ct", "CrossTransformer, meta-trained (tokens)"))


class TokenNorm(nn.Module):
    """Flattened tokens ``[n, L·D]`` -> ``[n, L·D]``: dropout (training only) then a
    LayerNorm over each token's ``D`` features."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(TOKEN_DIM)

    def forward(self, tokens: Tensor) -> Tensor:
        grid = tokens.unflatten(-1, (-1, TOKEN_DIM))
        return self.norm(self.dropout(grid)).flatten(-2)


def build_cross_transformer(config: dict | None = None, seed: int = 0) -> CrossTransformer:
    c = config or CONFIG
    torch.manual_seed(seed)  # the initial heads: row (c) is this learner untrained
    return CrossTransformer(TokenNorm(c["input_dropout"]), GRID, TOKEN_DIM,
                            key_dim=c["key_dim"], value_dim=c["value_dim"], heads=c["heads"],
                            temperature=c["temperature"])


def token_splits(data_root: str | None, split: str, variants: bool) -> dict:
    splits = {}
    for style in ("google", "twitter"):
        tokens = emoji_features(data_root, split, style, variants, tokens=True)
        if variants:
            splits[("variants", style)] = tokens
            splits[("base", style)] = base_only(tokens)
        else:
            splits[style] = tokens
    return splits


def train_cross_transformer(data_root: str | None, minutes: float, seed: int) -> dict:
    """Meta-train row (d) for ``minutes``, keep the best VAL weights, save them."""
    splits = token_splits(data_root, "train", True)
    val = token_splits(data_root, "val", False)
    learner = build_cross_transformer(seed=seed)
    optimizer = torch.optim.AdamW(learner.parameters(), lr=CONFIG["lr"],
                                  weight_decay=CONFIG["weight_decay"])
    batches = training_batches(splits, seed, CONFIG["meta_batch"])
    untrained_val = val_score(learner.eval(), val, EVAL_BATCH)
    print(f"VAL 20w1s CrossTransformer before training: {100 * untrained_val:.2f}%",
          flush=True)
    best, history, steps, train_minutes = select_on_val(
        learner, optimizer, batches, val, minutes, CONFIG["val_every"], EVAL_BATCH)
    HEAD_DIR.mkdir(parents=True, exist_ok=True)
    weights = HEAD_DIR / "head.safetensors"
    save_file({k: v.contiguous() for k, v in best[2].items()}, str(weights))
    info = {"learner": "CrossTransformer over cached Lite0 tokens", "config": CONFIG,
            "encoder_weights_sha256": weights_sha256(), "seed": seed,
            "train_classes": splits[("base", "google")].num_classes,
            "budget_minutes": minutes, "train_minutes": train_minutes, "steps": steps,
            "best_step": best[1], "best_val_20w1s": 100 * best[0],
            "val_20w1s_untrained": 100 * untrained_val, "history": history,
            "weights": str(weights.relative_to(HEAD_DIR.parent.parent)),
            "weights_sha256": file_sha256(weights),
            "parameters": sum(p.numel() for p in learner.parameters())}
    atomic_write_bytes(HEAD_DIR / "head.json", json.dumps(info, indent=1).encode())
    return info


def load_cross_transformer() -> tuple[CrossTransformer, dict]:
    info = json.loads((HEAD_DIR / "head.json").read_text())
    learner = build_cross_transformer(info["config"])
    learner.load_state_dict(load_file(str(HEAD_DIR / "head.safetensors")))
    return learner.eval(), info


def verdict(difference: float, ci95: float) -> str:
    return ("relational ahead" if difference - ci95 > 0 else "pooled ahead"
            if difference + ci95 < 0 else "tie (the interval holds 0)")


def markdown(rows: list[dict], info: dict, command: str) -> str:
    lines = [
        "# Cross-style emoji: relational attention over Lite0 tokens vs the pooled learners",
        "", f"Command: `{command}`.", "",
        "TEST classes (404), 20-way 1-shot, support in one style and one query per class "
        f"in the other; {rows[0]['episodes']} episodes per direction, seed "
        f"{rows[0]['episode_seed']}, the same episodes for every column (those of "
        "[emoji.md](emoji.md)); accuracy % ± 95% CI over episodes; differences paired by "
        "episode with their own 95% CI. Frozen EfficientNet-Lite0 (ImageNet) at 224 px: "
        "pooled features [1280] for the first two columns, the 7x7 token map "
        "[49, 1280] for the CrossTransformers, embedded once and cached.", "",
        "| support → query | " + " | ".join(name for _, name in METHODS)
        + " | trained CT − prototypes | trained CT − head |", "|---" * (len(METHODS) + 3) + "|"]
    for r in rows:
        cells = [f"{r[f'{key}_accuracy']:.2f} ± {r[f'{key}_ci95']:.2f}" for key, _ in METHODS]
        lines.append(
            f"| {r['support_style']} → {r['query_style']} | " + " | ".join(cells)
            + f" | {r['ct_vs_prototypes']:+.2f} ± {r['ct_vs_prototypes_ci95']:.2f} "
            f"({verdict(r['ct_vs_prototypes'], r['ct_vs_prototypes_ci95'])}) | "
            f"{r['ct_vs_head']:+.2f} ± {r['ct_vs_head_ci95']:.2f} "
            f"({verdict(r['ct_vs_head'], r['ct_vs_head_ci95'])}) |")
    c = info["config"]
    lines += [
        "", f"**Trained CrossTransformer.** Dropout({c['input_dropout']}) → LayerNorm(1280) "
        f"on each token, key and value heads 1280 → {c['key_dim']} / {c['value_dim']}, "
        f"{c['heads']} head; {info['parameters']:,} parameters. Meta-trained on the "
        f"{info['train_classes']} TRAIN classes' cross-style episodes ({c['meta_batch']} "
        f"tasks a step; AdamW lr {c['lr']:g}, weight decay {c['weight_decay']:g}, clip 1) "
        f"for {info['train_minutes']:.1f} minutes on one thread ({info['steps']} steps); "
        f"the weights of step {info['best_step']} were kept, best on 400 VAL-class 20-way "
        f"1-shot episodes ({info['best_val_20w1s']:.2f}%; before training: "
        f"{info['val_20w1s_untrained']:.2f}%). Weights "
        f"`{info['weights']}` (sha256 `{info['weights_sha256']}`), not committed. "
        f"The pooled head's own training: [emoji.md](emoji.md).", "",
        f"Encoder weights sha256: `{info['encoder_weights_sha256']}`.",
        f"Machine: {rows[0]['machine']}.", "", "![emoji relational](emoji_relational.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    width = 0.8 / len(METHODS)
    figure, ax = plt.subplots(figsize=(8, 4))
    for i, (key, name) in enumerate(METHODS):
        ax.bar(x + (i - (len(METHODS) - 1) / 2) * width, [r[f"{key}_accuracy"] for r in rows],
               width, yerr=[r[f"{key}_ci95"] for r in rows], capsize=3, label=name)
    ax.set_xticks(x, [f"{r['support_style']} → {r['query_style']}" for r in rows])
    ax.set_ylabel("accuracy % (95% CI)")
    ax.set_ylim(0, 100)
    ax.set_title("Cross-style emoji, 20-way 1-shot, TEST classes")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> None:
    args, command = parse_arguments(__doc__, 20.0)
    path = args.out / "emoji_relational.json"
    if args.retrain or not (HEAD_DIR / "head.json").is_file():
        train_cross_transformer(args.data_root, args.train_minutes, args.train_seed)
    trained, info = load_cross_transformer()
    rows = json.loads(path.read_text()) if args.resume and path.is_file() else []
    rows = [r for r in rows if r.get("ct_sha256") == info["weights_sha256"]]
    head, head_info = load_head()
    pooled = {s: base_only(emoji_features(args.data_root, "test", s, True))
              for s in ("google", "twitter")}
    tokens = {s: split for (kind, s), split in token_splits(args.data_root, "test", True).items()
              if kind == "base"}
    done = {r["support_style"] for r in rows}
    start = time.time()
    for source, target in DIRECTIONS:
        if source in done:
            continue

        def values(learner: nn.Module, splits: dict, batch: int = 50) -> np.ndarray:
            return episode_values(learner, splits[source], splits[target], 20, 1,
                                  args.episodes, args.seed, batch)

        with torch.inference_mode():
            got = {"prototypes": values(prototypes_learner(), pooled),
                   "head": values(head, pooled),
                   "ct_untrained": values(build_cross_transformer(info["config"],
                                                                  info["seed"]).eval(),
                                          tokens, EVAL_BATCH),
                   "ct": values(trained, tokens, EVAL_BATCH)}
        row = {"n_way": 20, "k_shot": 1, "q_query": 1, "support_style": source,
               "query_style": target, "episodes": args.episodes, "episode_seed": args.seed}
        for key, _ in METHODS:
            s = summarize(got[key])
            row[f"{key}_accuracy"], row[f"{key}_ci95"] = 100 * s.mean, 100 * s.ci95
        for other in ("prototypes", "head", "ct_untrained"):
            d = paired_difference(got["ct"], got[other])
            row[f"ct_vs_{other}"], row[f"ct_vs_{other}_ci95"] = 100 * d.mean, 100 * d.ci95
        row.update({"ct_sha256": info["weights_sha256"], "head_sha256":
                    head_info["weights_sha256"], "ct_train_minutes": info["train_minutes"],
                    "command": command, "machine": describe_machine()})
        rows.append(row)
        atomic_write_bytes(path, json.dumps(rows, indent=1).encode())
        print(f"{source}->{target}: " + ", ".join(f"{k} {row[f'{k}_accuracy']:.2f}"
                                                  for k, _ in METHODS)
              + f" ({(time.time() - start) / 60:.1f} min)", flush=True)
    atomic_write_bytes(args.out / "emoji_relational.md", markdown(rows, info, command).encode())
    plot(rows, args.out / "emoji_relational.png")
    print(f"wrote {path}, emoji_relational.md, emoji_relational.png")


if __name__ == "__main__":
    main()
