"""BreastMNIST and RetinaMNIST with K labelled images per class: four few-shot classifiers
over frozen EfficientNet-Lite0 features beside MedMNIST v2's full-data baselines.

    OMP_NUM_THREADS=1 ATTNMETA_DATA=/work/shared/data python benchmarks/medical.py \
        [--draws 25] [--seed 1234] [--resume]

Protocol: for each set and K in 1, 5, 10, 20, 25 seeded draws (``numpy`` generator of
``[seed, set, K, draw]``) of K images per class from the official TRAIN split (without
replacement) are the support set; the queries are the whole official TEST split (156
breast, 400 retina images). Every method sees the same draws. Accuracy % is the mean over
draws ± the 95% CI over draws (``attnmeta.metrics.summarize``: normal approximation,
n = 25); "vs prototypes" is each method − prototypes paired by draw
(``paired_difference``). Images are read as ``attnmeta adapt efficientnet-lite0`` reads
them (28 px upscaled to 224, grey made RGB) and embedded once (``frozen_features.py``).

Methods (no method ever sees a test label or the VAL split; nothing is tuned per set):

- **prototypes**: cosine prototypes centred on the support mean (``ProtoNet(distance=
  "cosine", temperature=0.1, center=True)``), what ``attnmeta adapt efficientnet-lite0``
  fits; no training. **uncentred prototypes**: the same without the centring.
- **emoji head**: the attention head ``benchmarks/emoji.py`` meta-trained on emoji (
  ``runs/emoji_head/``), never trained on medical images: CAML's cross-domain setting.
- **fine-tuned prototypes**: P>M>F-style test-time fine-tuning on each support set, here
  a cosine classifier (``attnmeta.learners.pretraining.CosineClassifier``, scale 10)
  imprinted with the support prototypes and trained on the support features with
  cross-entropy, 50 full-batch Adam steps at lr 1e-3 (fixed in advance). The library's
  ``SupportFinetuning`` tunes the encoder through the 224-px images, which is out of reach
  on one CPU thread for 25 draws x 4 K x 2 sets; the cached features allow only the head.
- **logistic regression**: scikit-learn ``LogisticRegression`` (lbfgs, L2, C = 10 fixed,
  intercept, max_iter 2000) on L2-normalised features.

Writes ``medical.json`` after every row (``--resume`` skips rows already there), then
``medical.md`` and ``medical.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emoji import load_head, prototypes_learner  # noqa: E402
from frozen_features import medmnist_features, weights_sha256  # noqa: E402

from attnmeta.metrics import paired_difference, summarize  # noqa: E402
from attnmeta.files import atomic_write_bytes  # noqa: E402
from attnmeta.learners.pretraining import CosineClassifier  # noqa: E402
from attnmeta.machine import describe_machine  # noqa: E402

SETS = ("breastmnist", "retinamnist")
SHOTS = (1, 5, 10, 20)
METHODS = ("prototypes", "uncentred_prototypes", "emoji_head", "finetuned_prototypes",
           "logistic_regression")
NAMES = {"prototypes": "Lite0 cosine prototypes, centred (what adapt fits)",
         "uncentred_prototypes": "Lite0 cosine prototypes, uncentred",
         "emoji_head": "emoji-trained attention head",
         "finetuned_prototypes": "fine-tuned prototypes (cosine head, 50 Adam steps)",
         "logistic_regression": "logistic regression (C = 10)"}
FINETUNE_STEPS, FINETUNE_LR = 50, 1e-3
LOGREG_C = 10.0

# MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023, Table 3): test ACC, full training
# split. None: a figure not checked here (see PUBLISHED_NOTE).
PUBLISHED = {
    "breastmnist": {"ResNet-18 (28)": 0.863, "ResNet-18 (224)": None, "ResNet-50 (28)": None,
                    "ResNet-50 (224)": None, "auto-sklearn": None, "AutoKeras": None,
                    "Google AutoML Vision": None},
    "retinamnist": {"ResNet-18 (28)": 0.524, "ResNet-18 (224)": 0.493, "ResNet-50 (28)": 0.528,
                    "ResNet-50 (224)": 0.511, "auto-sklearn": 0.515, "AutoKeras": 0.503,
                    "Google AutoML Vision": 0.531},
}
PUBLISHED_NOTE = (
    "Published figures: MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023, "
    "doi:10.1038/s41597-022-01721-8), Table 3, test ACC with the full training split. The "
    "paper itself could not be opened here; the figures were read from copies of its "
    "table found with the search tool, and only those where copies agree are given. "
    "ResNet-18 (28) BreastMNIST 0.863: a verification record that recomputes it from the "
    "authors' released predictions (\"ResNet-18 (28), BreastMNIST: AUC 0.901, ACC 0.863\", "
    "citing Table 3) and a third-party README's copy of the table agree. RetinaMNIST, all "
    "seven: two independent GitHub READMEs reproducing RetinaMNIST baselines quote the "
    "same row (0.524 / 0.493 / 0.528 / 0.511 / 0.515 / 0.503 / 0.531); the third-party "
    "table agrees on ResNet-18 (28) 0.524 and Google AutoML 0.531 but not on the others "
    "(e.g. ResNet-50 (28) 0.485), so that copy is not trusted. The other BreastMNIST "
    "figures are left blank (n/c): the only copy found is that untrusted table "
    "(ResNet-18 (224) 0.833, ResNet-50 (28) 0.918, ResNet-50 (224) 0.842, auto-sklearn "
    "0.801, AutoKeras 0.813, Google AutoML 0.854), not checked against the paper.")


def draw_support(labels: np.ndarray, k_shot: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices: ``k_shot`` per class (class order), drawn without replacement."""
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k_shot,
                                      replace=False) for c in range(int(labels.max()) + 1)])


def finetuned_prototypes(support_z, support_y, query_z, classes: int) -> torch.Tensor:
    head = CosineClassifier(support_z.shape[1], classes, scale=10.0)
    head.imprint(support_z, support_y)
    optimizer = torch.optim.Adam(head.parameters(), lr=FINETUNE_LR)
    for _ in range(FINETUNE_STEPS):
        optimizer.zero_grad()
        F.cross_entropy(head(support_z), support_y).backward()
        optimizer.step()
    with torch.no_grad():
        return head(query_z)


def logistic_regression(support_z, support_y, query_z) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=LOGREG_C, max_iter=2000)
    model.fit(F.normalize(support_z, dim=-1).numpy(), support_y.numpy())
    return model.predict(F.normalize(query_z, dim=-1).numpy())


def predictions(method: str, head, support_z, support_y, query_z, classes: int
                ) -> np.ndarray:
    if method == "logistic_regression":
        return logistic_regression(support_z, support_y, query_z)
    if method == "finetuned_prototypes":
        logits = finetuned_prototypes(support_z, support_y, query_z, classes)
    else:
        learner = (prototypes_learner() if method == "prototypes" else
                   prototypes_learner(center=False) if method == "uncentred_prototypes"
                   else head)
        logits = learner.eval().predict(support_z, support_y, query_z)
    return logits.argmax(-1).numpy()


def markdown(rows: list[dict], info: dict, majority: dict, command: str) -> str:
    lines = ["# BreastMNIST and RetinaMNIST with K labelled images per class", "",
             "Commands that made the rows: " + ", ".join(
                 f"`{c}`" for c in sorted({r["command"] for r in rows}))
             + f"; tables written by `{command}`.", "",
             "Support: K images per class drawn from the official TRAIN split, "
             f"{rows[0]['draws'] if rows else '?'} seeded draws (seed "
             f"{rows[0]['seed'] if rows else '?'}); queries: the whole official TEST split. "
             "Accuracy % = mean over draws ± 95% CI over draws; vs prototypes = method − "
             "prototypes paired by draw (95% CI). All methods over the same frozen "
             "EfficientNet-Lite0 features (224 px, as `attnmeta adapt` reads the images), "
             "no medical training beyond the K-shot support set.", ""]
    for name in SETS:
        published = PUBLISHED[name]
        target = 100 * published["ResNet-18 (28)"]
        mine = [r for r in rows if r["set"] == name]
        lines += [f"## {name} (test {mine[0]['test_size'] if mine else '?'} images; "
                  f"majority-class accuracy {100 * majority[name]:.1f}%)", "",
                  "| method | K=1 | K=5 | K=10 | K=20 |", "|---|---|---|---|---|"]
        for method in METHODS:
            cells = []
            for k in SHOTS:
                row = next((r for r in mine if r["method"] == method and r["k_shot"] == k),
                           None)
                if row is None:
                    cells.append("—")
                    continue
                cell = f"{row['accuracy']:.1f} ± {row['ci95']:.1f}"
                if method != "prototypes":
                    cell += f" ({row['difference']:+.1f} ± {row['difference_ci95']:.1f})"
                cells.append(cell)
            lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
        lines += ["", "(in brackets: − prototypes, paired by draw)", "",
                  "| MedMNIST v2, full training split | " + " | ".join(published) + " |",
                  "|---" * (len(published) + 1) + "|",
                  "| test ACC % | " + " | ".join(
                      f"{100 * v:.1f}" if v is not None else "n/c"
                      for v in published.values()) + " |", ""]
        best = max(mine, key=lambda r: r["accuracy"], default=None)
        if best is not None:
            met = best["accuracy"] >= target
            lines += [f"**Goal** (K ≤ 20, at or above ResNet-18 (28)'s {target:.1f}%): "
                      f"**{'met' if met else 'not met'}** — best {best['accuracy']:.1f} ± "
                      f"{best['ci95']:.1f}% ({NAMES[best['method']]}, K={best['k_shot']}), "
                      f"{best['accuracy'] - target:+.1f} points.", ""]
    both = all(max((r["accuracy"] for r in rows if r["set"] == n), default=0)
               >= 100 * PUBLISHED[n]["ResNet-18 (28)"] for n in SETS)
    lines += [f"**Goal on both sets: {'met' if both else 'not met'}.**", "",
              PUBLISHED_NOTE, "",
              f"Emoji head: `{info['weights']}` (sha256 `{info['weights_sha256']}`), "
              f"meta-trained {info['train_minutes']:.1f} min on emoji TRAIN classes only. "
              f"Fine-tuning: cosine classifier imprinted with the prototypes, "
              f"{FINETUNE_STEPS} Adam steps at lr {FINETUNE_LR} on the support features "
              f"(not the library's encoder fine-tuning). Logistic regression: scikit-learn, "
              f"C = {LOGREG_C:g} fixed, L2-normalised features.", "",
              f"Encoder weights sha256: `{weights_sha256()}`.",
              f"Machine: {rows[0]['machine'] if rows else describe_machine()}.", "",
              "![medical](medical.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, SETS):
        for method in METHODS:
            mine = sorted((r for r in rows if r["set"] == name and r["method"] == method),
                          key=lambda r: r["k_shot"])
            if not mine:
                continue
            k = [r["k_shot"] for r in mine]
            mean = np.array([r["accuracy"] for r in mine])
            ci = np.array([r["ci95"] for r in mine])
            ax.plot(k, mean, marker="o", label=NAMES[method])
            ax.fill_between(k, mean - ci, mean + ci, alpha=0.2)
        ax.axhline(100 * PUBLISHED[name]["ResNet-18 (28)"], color="black", linestyle="--",
                   linewidth=1, label="ResNet-18 (28), full training split")
        ax.set_xscale("log")
        ax.set_xticks(SHOTS, [str(s) for s in SHOTS])
        ax.set_xlabel("K labelled training images per class")
        ax.set_ylabel("test accuracy % (95% CI over draws)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python " + " ".join(shlex.quote(a) for a in sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "medical.json"
    rows = json.loads(path.read_text()) if args.resume and path.is_file() else []
    head, info = load_head()
    rows = [r for r in rows if r["method"] != "emoji_head"
            or r.get("head_sha256") == info["weights_sha256"]]
    done = {(r["set"], r["k_shot"], r["method"]) for r in rows}
    majority, start, count = {}, time.time(), 0
    todo = [(n, k, m) for n in SETS for k in SHOTS for m in METHODS if (n, k, m) not in done]
    data = {}
    for name in SETS:
        data[name] = (medmnist_features(args.data_root, name, "train"),
                      medmnist_features(args.data_root, name, "test"))
        test_y = data[name][1][1].numpy()
        majority[name] = float(np.bincount(test_y).max() / len(test_y))
    protos_cache: dict = {}
    for name, k_shot, method in todo:
        (train_z, train_y), (test_z, test_y) = data[name]
        classes = int(train_y.max()) + 1
        set_index = SETS.index(name)
        values = []
        for draw in range(args.draws):
            rng = np.random.default_rng([args.seed, set_index, k_shot, draw])
            rows_ = torch.from_numpy(draw_support(train_y.numpy(), k_shot, rng))
            predicted = predictions(method, head, train_z[rows_], train_y[rows_], test_z,
                                    classes)
            values.append(float((predicted == test_y.numpy()).mean()))
        values = np.asarray(values)
        key = (name, k_shot)
        if method == "prototypes":
            protos_cache[key] = values
        elif key not in protos_cache:
            protos_cache[key] = np.asarray(next(r for r in rows if r["set"] == name and r[
                "k_shot"] == k_shot and r["method"] == "prototypes")["values"]) / 100
        s = summarize(values)
        d = paired_difference(values, protos_cache[key])
        row = {"set": name, "k_shot": k_shot, "method": method, "method_name": NAMES[method],
               "draws": args.draws, "seed": args.seed, "test_size": int(len(test_y)),
               "accuracy": 100 * s.mean, "ci95": 100 * s.ci95,
               "difference": 100 * d.mean, "difference_ci95": 100 * d.ci95,
               "values": [100 * v for v in values.tolist()],
               "head_sha256": info["weights_sha256"] if method == "emoji_head" else None,
               "command": command, "machine": describe_machine()}
        rows.append(row)
        rows.sort(key=lambda r: (SETS.index(r["set"]), r["k_shot"], METHODS.index(r["method"])))
        atomic_write_bytes(path, json.dumps(rows, indent=1).encode())
        count += 1
        rate = (time.time() - start) / count
        print(f"{name} K={k_shot} {method}: {row['accuracy']:.2f} ± {row['ci95']:.2f} "
              f"(vs protos {row['difference']:+.2f} ± {row['difference_ci95']:.2f}) "
              f"[{count}/{len(todo)}, ETA {rate * (len(todo) - count) / 60:.1f} min]",
              flush=True)
    atomic_write_bytes(args.out / "medical.md",
                       markdown(rows, info, majority, command).encode())
    plot(rows, args.out / "medical.png")
    print(f"wrote {path}, medical.md, medical.png")


if __name__ == "__main__":
    main()
