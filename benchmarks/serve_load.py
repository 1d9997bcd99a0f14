"""``attnmeta serve`` under load: client threads sending predictions while another thread
adapts the server to a new class set every ``--adapt-every`` seconds (issue 29, item 4).

    OMP_NUM_THREADS=2 python benchmarks/serve_load.py [--clients 8] [--predictions 50]
        [--adapt-every 0.2] [--before REF] [--out benchmarks/results] [--stem serve_load]

The server is the real one: ``attnmeta serve RUN`` in its own process (uvicorn, loopback),
serving a small model made here: a ProtoNet over Conv4 (32 channels, running batch-norm
statistics) trained for 20 steps on a synthetic 28x28 grey image folder (6 classes), the
size of an Omniglot model. Each client sends ``--predictions`` requests of one 28x28 PNG
query; the adapter alternates between two class sets over the same six support images
(``black, stripes, white`` and ``dark, light``). A client answered 409 or 503 tries again
after 50 ms (what the page's user would do), and its latency includes the retries.

Reported per server: errors (any answer but 200 after retries, or a failed request), the
409 / 503 answers retried, the adapts made (and refused), whether every answer's classes
are one whole class set, and the latency percentiles. ``--before REF`` runs the same load
against the package at git ``REF`` first (``git archive``: the working tree is untouched).
The load average is recorded: other work on the machine shows in the latencies.
Writes ``<stem>.json`` and ``<stem>.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from attnmeta.files import atomic_write_bytes
from attnmeta.machine import describe_machine, machine_info

TOKEN = "serve-load-benchmark"
KINDS = ["black", "stripes", "white"]
DARK_LIGHT = {"black": "dark", "stripes": "dark", "white": "light"}
ROOT = Path(__file__).resolve().parents[1]


def picture(kind: str, seed: int, size: int = 28) -> bytes:
    rng = np.random.default_rng(seed)
    base = {"black": np.zeros((size, size)), "white": np.ones((size, size)),
            "stripes": np.tile((np.arange(size) // 2 % 2)[None], (size, 1)).astype(float)}[kind]
    pixels = np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def train_small_run(folder: Path) -> Path:
    """A ProtoNet run (Conv4, 32 channels, running norm) trained 20 steps on 28x28 images."""
    from attnmeta.runs.config import config_from_dict
    from attnmeta.runs.episodic import train_run

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c in range(6):
            pattern = rng.random((28, 28))
            (folder / "images" / split / f"class_{c}").mkdir(parents=True)
            for i in range(6):
                pixels = np.clip(pattern + 0.2 * rng.standard_normal((28, 28)), 0, 1)
                Image.fromarray((pixels * 255).astype(np.uint8)).save(
                    folder / "images" / split / f"class_{c}" / f"{i}.png")
    config = config_from_dict({
        "name": "serve-load", "seed": 3,
        "data": {"dataset": "image_folder", "root": str(folder / "images"), "image_size": 28,
                 "train": {"n_way": 3, "k_shot": 1, "q_query": 2},
                 "test": {"n_way": 3, "k_shot": 1, "q_query": 2}},
        "model": {"hidden": 32, "norm": "running"},
        "learner": {"name": "protonet"},
        "train": {"steps": 20, "meta_batch": 2, "lr": 0.01, "log_every": 10,
                  "checkpoint_every": 20, "eval_every": 0},
    })
    run = folder / "run"
    train_run(config, run, progress=False, will_evaluate=False)
    return run


class Server:
    """``attnmeta serve RUN --port 0`` in its own process (``src``: the package's source
    folder to run), its URL read from the line it prints."""

    def __init__(self, run: Path, src: Path) -> None:
        env = {**os.environ, "ATTNMETA_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(src)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from attnmeta.cli import main; main()", "serve", str(run),
             "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        deadline = time.monotonic() + 120
        for line in self.process.stdout:
            if " at http://" in line:
                self.url = line.split(" at ", 1)[1].split()[0].rstrip("/")
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("attnmeta serve did not start")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # drain

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def load(url: str, clients: int, predictions: int, adapt_every: float) -> dict:
    """The load on one server; the numbers of the row."""
    headers = {"X-Attnmeta-Token": TOKEN}
    support = [(f"{kind}-{seed}.png", picture(kind, seed), kind)
               for kind in KINDS for seed in range(2)]
    sets = [{"files": [("files", (n, data, "image/png")) for n, data, _ in support],
             "data": {"labels": [label for *_, label in support]}},
            {"files": [("files", (n, data, "image/png")) for n, data, _ in support],
             "data": {"labels": [DARK_LIGHT[label] for *_, label in support]}}]
    class_sets = [frozenset(KINDS), frozenset(DARK_LIGHT.values())]
    queries = [picture(kind, 10 + seed) for kind in KINDS for seed in range(4)]
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        first = client.post("/api/adapt", **sets[0])
        assert first.status_code == 200, first.text

    lock = threading.Lock()
    latencies, retries, errors, mixed = [], {409: 0, 503: 0}, [], 0
    adapts = {"made": 0, "refused": 0, "failed": 0}
    stop = threading.Event()

    def adapter() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            number = 1
            while not stop.wait(adapt_every):
                try:
                    answer = client.post("/api/adapt", **sets[number % 2])
                    key = {200: "made", 409: "refused"}.get(answer.status_code, "failed")
                except httpx.HTTPError:
                    key = "failed"
                adapts[key] += 1
                number += 1

    def client_thread(index: int) -> None:
        nonlocal mixed
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for n in range(predictions):
                query = queries[(index + n) % len(queries)]
                started = time.perf_counter()
                while True:
                    try:
                        answer = client.post("/api/predict", files=[
                            ("files", (f"q{index}-{n}.png", query, "image/png"))])
                    except httpx.HTTPError as error:
                        with lock:
                            errors.append(f"{type(error).__name__}: {error}")
                        break
                    if answer.status_code in retries:
                        with lock:
                            retries[answer.status_code] += 1
                        time.sleep(0.05)
                        continue
                    seconds = time.perf_counter() - started
                    with lock:
                        if answer.status_code != 200:
                            errors.append(f"{answer.status_code}: {answer.text[:100]}")
                            break
                        latencies.append(seconds)
                        for record in answer.json()["predictions"]:
                            seen = frozenset(name for name, _ in record["top_k"])
                            mixed += seen not in class_sets
                    break

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    adapting = threading.Thread(target=adapter)
    adapting.start()
    workers = [threading.Thread(target=client_thread, args=(i,)) for i in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    adapting.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0

    return {"requests": clients * predictions, "answered": len(latencies),
            "errors": len(errors), "error_examples": errors[:5],
            "retried_409": retries[409], "retried_503": retries[503],
            "adapts": adapts, "mixed_class_sets": mixed,
            "p50_ms": round(percentile(0.50), 1), "p95_ms": round(percentile(0.95), 1),
            "p99_ms": round(percentile(0.99), 1), "max_ms": round(percentile(1.0), 1),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0,
            "wall_s": round(wall, 1),
            "predictions_per_s": round(len(latencies) / wall, 1),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def source_at(ref: str, folder: Path) -> Path:
    """The package's ``src`` folder at git ``ref``, unpacked into ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def markdown(result: dict) -> str:
    rows = ["| server | requests | errors | 409 / 503 retried | adapts made (refused) | "
            "mixed class sets | p50 ms | p95 ms | p99 ms | max ms | predictions/s | "
            "load avg (1 min, before / after) |", "|" + "---|" * 12]
    for row in result["rows"]:
        adapts = row["adapts"]
        rows.append(
            f"| {row['server']} | {row['requests']} | {row['errors']} | "
            f"{row['retried_409']} / {row['retried_503']} | {adapts['made']} "
            f"({adapts['refused']}) | {row['mixed_class_sets']} | {row['p50_ms']} | "
            f"{row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} | "
            f"{row['predictions_per_s']} | {row['load_average_1min'][0]} / "
            f"{row['load_average_1min'][1]} |")
    return "\n".join([
        "# attnmeta serve under load", "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Server: `attnmeta serve RUN` in its own process (uvicorn on 127.0.0.1), RUN "
        f"{result['model']}. {result['clients']} client threads x {result['predictions']} "
        f"predictions of one 28x28 PNG each, an adapt every {result['adapt_every']} s "
        "beside them, alternating two class sets (3 classes / 2 classes) over the same 6 "
        "support images. A 409 or 503 is retried after 50 ms; a latency includes its "
        "retries. Goal (issue 29, item 4): 0 errors, every answer's classes one whole "
        "class set, p99 under 200 ms.", "",
        *rows, "",
        f"Note: {result['note']}", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--predictions", type=int, default=50)
    parser.add_argument("--adapt-every", type=float, default=0.2)
    parser.add_argument("--before", default=None, metavar="REF",
                        help="Also load the server of git REF (e.g. HEAD), first.")
    parser.add_argument("--note", default="", help="What else ran on the machine.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--stem", default="serve_load")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        run = train_small_run(Path(folder))
        servers = []
        if args.before:
            (Path(folder) / "before").mkdir()
            commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short",
                                     args.before], check=True, capture_output=True,
                                    text=True).stdout.strip()
            servers.append((f"before (git {args.before}: {commit})",
                            source_at(args.before, Path(folder) / "before")))
        servers.append(("this tree", ROOT / "src"))
        rows = []
        for name, src in servers:
            server = Server(run, src)
            try:
                row = load(server.url, args.clients, args.predictions, args.adapt_every)
            finally:
                server.close()
            rows.append({"server": name, **row})
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)")
              + " python " + shlex.join(["benchmarks/serve_load.py", *sys.argv[1:]]),
              "machine": describe_machine(), "machine_info": machine_info(),
              "model": "a ProtoNet over Conv4 (32 channels, running norm) trained 20 steps "
                       "on 28x28 grey images (made by this script)",
              "clients": args.clients, "predictions": args.predictions,
              "adapt_every": args.adapt_every, "note": args.note, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / f"{args.stem}.json",
                       (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(args.out / f"{args.stem}.md", markdown(result).encode())
    print(f"wrote {args.out / args.stem}.md")


if __name__ == "__main__":
    main()
