"""Speed of the zero-training photo path on this machine (issue 28): EfficientNet-Lite0
images per second when embedding (float32, bfloat16, channels-last, folded batch norms,
ONNX Runtime), seconds for ``attnmeta adapt efficientnet-lite0`` on 5 classes x 20 photos
from files (a new process: start, imports and weights included), and the time to predict one
photo from a file with a fitted model (p50 / p90 over repeats).

    python benchmarks/encoder_speed.py [--threads 2] [--repeats 5] [--out benchmarks/results]

Goals: adapt on 100 photos in under 5 s; one photo predicted in under 15 ms (p50). The
photos are scikit-image's samples cropped, mirrored and shifted in colour, saved as 640 x 480
JPEGs (a phone photo is larger: decoding grows with it; see the per-photo row). The machine
should be otherwise idle: the load average is written beside the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnmeta.files import atomic_write_bytes
from attnmeta.machine import describe_machine

CLASSES, PER_CLASS = 5, 20


def make_photos(root: Path) -> tuple[Path, Path]:
    """``root/support/<class>/<i>.jpg`` (5 x 20) and ``root/query.jpg``, 640 x 480."""
    from skimage import data

    sources = {"cat": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket(),
               "astronaut": data.astronaut(), "motorcycle": data.stereo_motorcycle()[0]}
    rng = np.random.default_rng(0)
    for name, pixels in sources.items():
        folder = root / "support" / name
        folder.mkdir(parents=True)
        height, width = pixels.shape[:2]
        for i in range(PER_CLASS):
            top, left = rng.integers(0, height // 5), rng.integers(0, width // 5)
            crop = pixels[top:top + height * 4 // 5, left:left + width * 4 // 5]
            crop = crop[:, ::-1] if i % 2 else crop
            tint = np.clip(crop * rng.uniform(0.85, 1.15, size=3), 0, 255).astype(np.uint8)
            Image.fromarray(tint).resize((640, 480)).save(folder / f"{i:02d}.jpg", quality=90)
    Image.fromarray(sources["cat"]).resize((640, 480)).save(root / "query.jpg", quality=90)
    return root / "support", root / "query.jpg"


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def embedding_rows(threads: int, repeats: int, batch: int) -> list[dict]:
    """Images per second of the encoder's pooled features on random 224 px inputs."""
    from attnmeta.models.efficientnet_lite import efficientnet_lite0
    from attnmeta.norm import fold_batch_norms

    torch.set_num_threads(threads)
    x = torch.rand(batch, 3, 224, 224)
    model = efficientnet_lite0().eval()
    folded = efficientnet_lite0().eval()
    fold_batch_norms(folded)
    channels_last = efficientnet_lite0().eval()
    fold_batch_norms(channels_last)
    channels_last = channels_last.to(memory_format=torch.channels_last)
    variants = {
        "float32": lambda: model(x),
        "float32, batch norms folded": lambda: folded(x),
        "float32, folded, channels-last": lambda: channels_last(
            x.contiguous(memory_format=torch.channels_last)),
    }

    def bfloat16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            folded(x)

    variants["bfloat16 (autocast), folded"] = bfloat16
    rows = []
    with torch.inference_mode():
        for name, run in variants.items():
            seconds = float(np.median(timed(run, repeats)))
            rows.append({"what": f"embed, {name}", "batch": batch,
                         "images_per_second": batch / seconds, "ms_per_batch": 1e3 * seconds})
    try:
        import onnxruntime
    except ImportError:
        return rows
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lite0.onnx"
        torch.onnx.export(folded, (x[:1],), str(path), input_names=["x"],
                          output_names=["features"], dynamic_axes={"x": {0: "n"}},
                          dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        seconds = float(np.median(timed(lambda: session.run(None, feed), repeats)))
    rows.append({"what": "embed, ONNX Runtime (folded)", "batch": batch,
                 "images_per_second": batch / seconds, "ms_per_batch": 1e3 * seconds})
    return rows


def adapt_row(support: Path, threads: int, repeats: int) -> dict:
    """``attnmeta adapt efficientnet-lite0`` on the 100 photos, as a new process each time."""
    attnmeta = Path(sys.executable).parent / "attnmeta"
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(repeats + 1):
            out = Path(folder) / f"model{i}"
            start = time.perf_counter()
            subprocess.run([str(attnmeta), "adapt", "efficientnet-lite0", "--support",
                            str(support), "--out", str(out), "--no-progress"], check=True,
                           env=environment, capture_output=True)
            times.append(time.perf_counter() - start)
    times = times[1:]  # the first also warms the file cache
    return {"what": f"attnmeta adapt efficientnet-lite0, {CLASSES} classes x {PER_CLASS} "
                    "photos from files (new process)", "seconds_median": float(np.median(times)),
            "seconds_all": times, "goal": "< 5 s", "met": float(np.median(times)) < 5.0}


def predict_row(support: Path, query: Path, threads: int, repeats: int) -> dict:
    """One photo from a file through a fitted (saved, loaded) model: p50 and p90."""
    from attnmeta.fewshot import FewShotClassifier

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        FewShotClassifier.from_encoder("efficientnet-lite0").fit(support).save(
            Path(folder) / "model")
        model = FewShotClassifier.load(Path(folder) / "model")
        times = timed(lambda: model.predict(query), repeats)
    p50, p90 = (float(np.percentile(times, q)) * 1e3 for q in (50, 90))
    return {"what": "predict one 640x480 JPEG from a file, fitted model (in process)",
            "ms_p50": p50, "ms_p90": p90, "repeats": repeats, "goal": "< 15 ms (p50)",
            "met": p50 < 15.0}


def markdown(result: dict) -> str:
    lines = [f"# EfficientNet-Lite0: speed of the zero-training path\n",
             f"`{result['command']}`\n", f"Machine: {result['machine']}; torch threads "
             f"{result['threads']}; load average before: {result['load_before']}.\n",
             "| what | batch | images/s | ms per batch |", "|---|---|---|---|"]
    for row in result["embedding"]:
        lines.append(f"| {row['what']} | {row['batch']} | {row['images_per_second']:.1f} | "
                     f"{row['ms_per_batch']:.1f} |")
    adapt, predict = result["adapt"], result["predict"]
    lines += ["", "`attnmeta adapt` and `predict` over a built-in encoder embed through ONNX "
              "Runtime where it is installed (`attnmeta.fewshot.onnx_engine`); the graph is "
              "exported once per machine (about 3 s, in the first adapt, which is the "
              "discarded warm-up run here) and read from the cache after.",
              "", "| what | measured | goal | met |", "|---|---|---|---|",
              f"| {adapt['what']} | {adapt['seconds_median']:.2f} s (median of "
              f"{len(adapt['seconds_all'])}) | {adapt['goal']} | {'yes' if adapt['met'] else 'no'} |",
              f"| {predict['what']} | p50 {predict['ms_p50']:.1f} ms, p90 "
              f"{predict['ms_p90']:.1f} ms ({predict['repeats']} repeats) | {predict['goal']} | "
              f"{'yes' if predict['met'] else 'no'} |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--predict-repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--stem", default="encoder_speed")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory() as folder:
        support, query = make_photos(Path(folder))
        print("embedding ...", file=sys.stderr)
        embedding = [row for batch in (1, 16)
                     for row in embedding_rows(args.threads, args.repeats, batch)]
        print("adapt ...", file=sys.stderr)
        adapt = adapt_row(support, args.threads, args.repeats)
        print("predict ...", file=sys.stderr)
        predict = predict_row(support, query, args.threads, args.predict_repeats)
    result = {"command": command, "machine": describe_machine(), "threads": args.threads,
              "load_before": load_before, "embedding": embedding, "adapt": adapt,
              "predict": predict}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / f"{args.stem}.json", json.dumps(result, indent=1).encode())
    atomic_write_bytes(args.out / f"{args.stem}.md", markdown(result).encode())
    print(markdown(result))


if __name__ == "__main__":
    main()
