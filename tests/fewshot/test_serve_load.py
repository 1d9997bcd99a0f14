"""attnmeta serve under load, through the real app: predictions run concurrently (never 409)
beside adapts that swap the class set, and every answer comes from one whole class set;
a prediction already running keeps the fitted state it started with; past the slots and
the queue a prediction is 503; a request's images are refused past the decoded-pixel budget
(from their headers) naming the file; a request's uploads are removed when it ends (the
last adapt's kept for its thumbnails), all kept with ``keep``; the progress board shows the
newest job with the time left. Deterministic: events order the threads, nothing is timed.

The model is test_serve's 2-step ProtoNet run, its fixtures imported.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from PIL import Image

from attnmeta.fewshot import serve, uploads
from attnmeta.fewshot.serve import JobProgress, create_app
from test_serve import CLASSES, files, local_client, refused, support_form
from test_serve import pictures, run  # noqa: F401  (fixtures)

# the same pictures, two class sets: the three kinds, or dark against light
DARK_LIGHT = {"black": "dark", "stripes": "dark", "white": "light"}


def dark_light_form(pictures):
    upload, fields = support_form(pictures)
    return upload, {"labels": [DARK_LIGHT[label] for label in fields["labels"]]}


def class_set(record: dict) -> frozenset[str]:
    return frozenset(name for name, _ in record["top_k"])


def test_predictions_run_beside_adapts_and_each_answer_is_one_whole_class_set(run, pictures):
    three, two = frozenset(CLASSES), frozenset(DARK_LIGHT.values())
    forms = [support_form(pictures), dark_light_form(pictures)]
    queries = files(pictures["query"])
    answers, statuses = [], []
    lock = threading.Lock()
    app = create_app(run)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=forms[0][0], data=forms[0][1]).status_code == 200
        stop = threading.Event()

        def adapting() -> int:
            count = 0
            while not stop.is_set() or count < 4:
                upload, fields = forms[count % 2]
                answer = client.post("/api/adapt", files=upload, data=fields)
                assert answer.status_code == 200, answer.text
                count += 1
            return count

        def predicting(_: int) -> None:
            for _ in range(6):
                answer = client.post("/api/predict", files=queries)
                with lock:
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        answers.append(answer.json()["predictions"])

        with ThreadPoolExecutor(5) as pool:
            adapts = pool.submit(adapting)
            list(pool.map(predicting, range(4)))
            stop.set()
            assert adapts.result() >= 4
    assert statuses == [200] * 24  # no 409, no error
    for records in answers:  # default top_k = every class: the whole set each answer saw
        sets = {class_set(record) for record in records}
        assert len(sets) == 1 and sets <= {three, two}, sets
        assert all(record["label"] in class_set(record) for record in records)


def test_a_running_prediction_keeps_the_class_set_it_started_with(run, pictures):
    app = create_app(run)
    model = app.state.model
    entered, release = threading.Event(), threading.Event()
    real = model._forward.predict_fitted

    def held(task, query_x):  # the first prediction waits inside the model
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        return real(task, query_x)

    with local_client(app) as client:
        upload, fields = support_form(pictures)
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        model._forward.predict_fitted = held
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/api/predict", files=files(pictures["query"]))
            assert entered.wait(30)
            upload, fields = dark_light_form(pictures)
            swapped = client.post("/api/adapt", files=upload, data=fields)  # beside it
            assert swapped.json()["classes"] == ["dark", "light"]
            second = client.post("/api/predict", files=files(pictures["query"]))
            release.set()
            old = first.result().json()["predictions"]
        assert [r["label"] for r in old] == [kind for kind in CLASSES for _ in range(2)]
        assert all(class_set(r) == frozenset(CLASSES) for r in old)
        new = second.json()["predictions"]
        assert all(class_set(r) == frozenset(["dark", "light"]) for r in new)
        assert [new[i]["label"] for i in (0, 1, 4, 5)] == ["dark", "dark", "light", "light"]
        assert client.get("/api/model").json()["classes"] == ["dark", "light"]


def test_a_prediction_runs_while_an_adapt_runs_and_a_second_adapt_is_409(run, pictures):
    app = create_app(run)
    model = app.state.model
    upload, fields = support_form(pictures)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        entered, release = threading.Event(), threading.Event()
        real_fit = model.fit

        def slow_fit(*args, **kwargs):
            entered.set()
            assert release.wait(30)
            return real_fit(*args, **kwargs)

        model.fit = slow_fit
        with ThreadPoolExecutor(1) as pool:
            adapting = pool.submit(client.post, "/api/adapt", files=upload, data=fields)
            try:
                assert entered.wait(30)
                answer = client.post("/api/predict", files=files(pictures["query"][:1]))
                assert answer.status_code == 200, answer.text
                assert answer.json()["predictions"][0]["label"] == "black"
                assert client.post("/api/adapt", files=upload, data=fields).status_code == 409
            finally:
                release.set()
            assert adapting.result().status_code == 200


def test_past_the_slots_and_the_queue_a_prediction_is_503(run, pictures, monkeypatch):
    monkeypatch.setattr(serve, "PREDICT_QUEUE", 0)
    app = create_app(run)
    model = app.state.model
    inside, release = threading.Semaphore(0), threading.Event()
    upload, fields = support_form(pictures)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        real = model._forward.predict_fitted

        def held(task, query_x):
            inside.release()
            assert release.wait(30)
            return real(task, query_x)

        model._forward.predict_fitted = held
        query = files(pictures["query"][:1])
        with ThreadPoolExecutor(serve.PREDICT_SLOTS) as pool:
            running = [pool.submit(client.post, "/api/predict", files=query)
                       for _ in range(serve.PREDICT_SLOTS)]
            try:
                for _ in running:  # both slots inside the model at once
                    assert inside.acquire(timeout=30)
                state = client.get("/api/progress").json()
                assert state["running"] and state["stage"] == "predicting 1 query"
                third = client.post("/api/predict", files=query)
                assert third.status_code == 503 and third.headers["retry-after"] == "1"
                assert third.json()["error"].startswith("busy: 2 predictions are running")
            finally:
                release.set()
            assert [future.result().status_code for future in running] == [200, 200]


def test_over_a_gradient_learner_predictions_take_the_one_slot_in_turn(tmp_path, pictures,
                                                                         monkeypatch):
    """MAML's forward passes put weights into the shared module (functional_call): one at
    a time, so with no queue a second prediction while one runs is 503, not run beside."""
    from support import make_image_folder, tiny_config

    from attnmeta.runs.episodic import train_run

    config = tiny_config(make_image_folder(tmp_path / "images"), "maml", steps=2)
    config.train.eval_every = 0
    train_run(config, tmp_path / "maml", progress=False, will_evaluate=False)
    monkeypatch.setattr(serve, "PREDICT_QUEUE", 0)
    app = create_app(tmp_path / "maml")
    assert app.state.predict_slots == 1
    model = app.state.model
    entered, release = threading.Event(), threading.Event()
    upload, fields = support_form(pictures)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        real = model._forward.predict_fitted

        def held(task, query_x):
            entered.set()
            assert release.wait(30)
            return real(task, query_x)

        model._forward.predict_fitted = held
        query = files(pictures["query"][:1])
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/api/predict", files=query)
            try:
                assert entered.wait(30)
                assert client.post("/api/predict", files=query).status_code == 503
            finally:
                release.set()
            assert first.result().status_code == 200


def png_header(width: int, height: int) -> bytes:
    """A valid PNG of ``width`` x ``height`` grey pixels whose data is one empty row: its
    header claims the size (all the pixel budget reads), its body is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


def test_a_request_over_the_pixel_budget_is_refused_before_anything_is_decoded(run, pictures):
    app = create_app(run)
    big = png_header(9000, 9000)  # 81 million pixels a header, under PIL's own limit
    with local_client(app) as client:
        upload, fields = support_form(pictures)
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        bigs = [("files", (f"big-{i}.png", big, "image/png")) for i in range(4)]
        refused(client.post("/api/predict", files=bigs),
                "big-3.png brings this request's images to 324.0 million pixels",
                f"at most {uploads.MAX_REQUEST_PIXELS // 10**6:,} million per request")
        refused(client.post("/api/adapt", files=upload[:2] + bigs,
                            data={"labels": ["black"] * 2 + ["white"] * 4}),
                "big-3.png brings")
        assert client.get("/api/model").json()["classes"] == CLASSES  # nothing changed
        assert client.get("/api/model").json()["limits"]["request_pixels"] == (
            uploads.MAX_REQUEST_PIXELS)
    # three are within it (checked from the headers alone: nothing here decodes them)
    three = [SimpleNamespace(filename=f"big-{i}.png", size=None, file=io.BytesIO(big))
             for i in range(3)]
    assert uploads.check_images(three, 16) == ["big-0.png", "big-1.png", "big-2.png"]
    with pytest.raises(uploads.InputError, match="big-1.png brings .* 162.0 million"):
        uploads.check_images(three, 16, max_pixels=100_000_000)


def test_a_requests_uploads_go_when_it_ends_and_the_last_adapts_stay(run, pictures, tmp_path):
    upload, fields = support_form(pictures)
    app = create_app(run)
    store = app.state.store
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        for _ in range(3):
            assert client.post("/api/predict", files=files(pictures["query"])).status_code == 200
        refused(client.post("/api/predict", files=[("files", ("x.png", b"nope", "image/png"))]),
                "x.png is not an image")
        assert [f.name for f in store.folders()] == ["adapt-0001"]  # its thumbnails' files
        first = client.get("/api/support").json()["classes"][0]["examples"][0]["thumbnail"]
        assert client.get(first).status_code == 200
        refused(client.post("/api/adapt", files=upload, data={"labels": ["x"] * 6}), "one class")
        assert [f.name for f in store.folders()] == ["adapt-0001"]  # a failed adapt's: gone
        upload2, fields2 = dark_light_form(pictures)
        assert client.post("/api/adapt", files=upload2, data=fields2).status_code == 200
        folders = store.folders()
        assert len(folders) == 1 and folders[0].name.startswith("adapt-")
        assert len(list(folders[0].glob("*.png"))) == 6
        shown = client.get("/api/support").json()["classes"]
        assert [group["name"] for group in shown] == ["dark", "light"]
        assert client.get(shown[1]["examples"][0]["thumbnail"]).status_code == 200
        assert client.get(first).status_code == 404  # the replaced adapt's
    assert not app.state.uploads.exists()

    keep = tmp_path / "kept"
    app = create_app(run, keep=keep)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        assert client.post("/api/predict", files=files(pictures["query"])).status_code == 200
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
    assert [f.name for f in app.state.store.folders()] == [
        "adapt-0001", "adapt-0002", "predict-0001"]
    assert len(list((keep / "predict-0001").glob("*.png"))) == 6


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_board_shows_the_newest_job_with_the_time_left():
    clock, out = Clock(), io.StringIO()
    board = JobProgress(out=out, clock=clock)
    assert board.snapshot() == {"stage": "idle", "done": 0, "total": 0, "running": False}
    adapt = board.start("adapting to 900 examples")
    assert board.snapshot() == {"stage": "adapting to 900 examples", "done": 0, "total": 0,
                                "running": True}
    clock.now += 2
    adapt.update(300, 900, "reading support images")
    clock.now += 3
    adapt.update(400, 900)  # 400 in the 3 s since the stage began: 3.75 s for 500 more
    assert board.snapshot() == {"stage": "reading support images", "done": 400,
                                "total": 900, "running": True, "eta_seconds": 3.8}
    assert adapt.line(clock.now) == "reading support images 400/900 (44%), about 4 s left"
    predict = board.start("predicting 1 query", 1)
    assert board.snapshot()["stage"] == "predicting 1 query"  # the newest running
    clock.now += 0.5
    predict.end("predicted", 1)
    assert board.snapshot()["stage"] == "reading support images"  # the adapt still runs
    adapt.end("adapted", 900)
    assert board.snapshot() == {"stage": "adapted", "done": 900, "total": 900,
                                "running": False}
    assert out.getvalue().splitlines()[-2:] == ["attnmeta serve: predicted 1/1 (0.50 s)",
                                                "attnmeta serve: adapted 900/900 (5.50 s)"]
    late = board.start("predicting 2 queries", 2)
    late.end("predicted", 2)
    assert board.snapshot()["stage"] == "predicted"


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_uploaded_thumbnails_are_made_once(run, pictures, tmp_path, kind):
    """The page asks for each thumbnail; a second GET answers from memory (the same bytes
    even with the file gone)."""
    app = create_app(run)
    path = tmp_path / f"black.{kind.lower()}"
    Image.open(pictures["black"][0]).save(path, kind)
    with local_client(app) as client:
        upload = files([path] + pictures["white"][:1])
        assert client.post("/api/adapt", files=upload,
                           data={"labels": ["black", "white"]}).status_code == 200
        url = client.get("/api/support").json()["classes"][0]["examples"][0]["thumbnail"]
        once = client.get(url)
        assert once.status_code == 200
        for stored in app.state.store.folders()[0].iterdir():
            stored.unlink()
        assert client.get(url).content == once.content
