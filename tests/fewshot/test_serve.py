"""attnmeta serve: the JSON endpoints (FastAPI's TestClient), every refused upload as one
400 line naming the problem, uploads gone after shutdown unless kept, and the page itself
driven in real headless Chromium: support set in, adapt, a query of a known class, its
class and attention picture shown.

The classes are trivially separable (near-black, near-white, stripes) and the learner is a
ProtoNet over running-statistics norm: a query sits nearest its own class's prototype even
with the barely trained weights of a 2-step run, so the known class is a reliable answer.
"""

from __future__ import annotations

import base64
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from attnmeta.fewshot import FewShotClassifier, InputError
from attnmeta.fewshot.guards import TOKEN_HEADER
from attnmeta.fewshot.inputs import MAX_IMAGE_BYTES
from attnmeta.fewshot.serve import bind, create_app
from attnmeta.fewshot.uploads import KEEP_MARKER, MAX_QUERY_FILES, MAX_SUPPORT_FILES
from attnmeta.runs.config import config_from_dict
from attnmeta.runs.episodic import train_run
from support import REAL_DATA, make_image_folder, needs_real_data, tiny_config, tiny_text_config

CLASSES = ["black", "stripes", "white"]


def picture(kind: str, seed: int, size: int = 20) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = {"black": np.zeros((size, size)), "white": np.ones((size, size)),
            "stripes": np.tile((np.arange(size) // 2 % 2)[None], (size, 1)).astype(float)}[kind]
    pixels = np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)
    return Image.fromarray((pixels * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    images = make_image_folder(tmp_path_factory.mktemp("images"))
    config = tiny_config(images, "protonet", steps=2)
    config.model.norm = "running"
    config.train.eval_every = 0
    folder = tmp_path_factory.mktemp("runs") / "protonet"
    train_run(config, folder, progress=False, will_evaluate=False)
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, list[Path]]:
    """Two support images and two queries (other noise) per class; ``"query"`` holds the
    queries of every class, in ``CLASSES`` order."""
    root = tmp_path_factory.mktemp("pictures")
    found: dict[str, list[Path]] = {"query": []}
    for kind in CLASSES:
        found[kind] = []
        for seed in range(4):
            path = root / f"{kind}-{seed}.png"
            picture(kind, seed).save(path)
            (found[kind] if seed < 2 else found["query"]).append(path)
    return found


def local_client(app) -> TestClient:
    """A TestClient as a script on this machine: Host 127.0.0.1 (the server refuses other
    names) and the server's token (a POST without an Origin needs it)."""
    return TestClient(app, base_url="http://127.0.0.1",
                      headers={TOKEN_HEADER: app.state.token})


def files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (path.name, path.read_bytes(), "image/png")) for path in paths]


def support_form(pictures: dict[str, list[Path]], classes=CLASSES):
    paths = [path for kind in classes for path in pictures[kind]]
    labels = [kind for kind in classes for _ in pictures[kind]]
    return files(paths), {"labels": labels}


def refused(response, *expected: str) -> str:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    return message


def test_adapt_then_predict_known_classes_as_json(run, pictures):
    with local_client(create_app(run)) as client:
        described = client.get("/api/model").json()
        assert described["modality"] == "image" and described["learner"]
        assert described["fitted"] is False and described["classes"] == []
        assert described["limits"]["file_bytes"] == MAX_IMAGE_BYTES
        refused(client.post("/api/predict", files=files(pictures["query"][:1])), "adapt first")

        upload, fields = support_form(pictures)
        answer = client.post("/api/adapt", files=upload, data=fields | {"steps": "0"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"classes": CLASSES, "examples": 6}
        assert client.get("/api/model").json()["classes"] == CLASSES

        answer = client.post("/api/predict", files=files(pictures["query"]),
                             data={"top_k": "2", "explain": "true"})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        expected = [kind for kind in CLASSES for _ in range(2)]
        assert [p["label"] for p in predictions] == expected
        assert [p["input"] for p in predictions] == [p.name for p in pictures["query"]]
        for p in predictions:
            assert set(p) == {"input", "label", "probability", "top_k", "explanation_png"}
            assert len(p["top_k"]) == 2 and p["top_k"][0] == [p["label"], p["probability"]]
            assert base64.b64decode(p["explanation_png"]).startswith(b"\x89PNG")
        # the same answer again (deterministic), and no picture unless asked
        again = client.post("/api/predict", files=files(pictures["query"])).json()["predictions"]
        assert [p["label"] for p in again] == expected
        assert all("explanation_png" not in p and len(p["top_k"]) == 3 for p in again)
        # rejected below a probability no answer reaches: label null, probability kept
        rejected = client.post("/api/predict", files=files(pictures["query"][:1]),
                               data={"reject_below": "0.99"}).json()["predictions"][0]
        assert rejected["label"] is None and rejected["probability"] < 0.99
        assert client.get("/api/progress").json() | {"done": 1} == {
            "stage": "predicted", "done": 1, "total": 1, "running": False}
        assert "id=\"results\"" in client.get("/").text


def test_every_bad_upload_is_one_400_line_naming_the_problem(run, pictures, tmp_path):
    with local_client(create_app(run)) as client:
        upload, fields = support_form(pictures)
        many = [("files", (f"{i}.png", b"x", "image/png")) for i in range(MAX_SUPPORT_FILES + 1)]
        refused(client.post("/api/adapt", files=many, data={"labels": ["a"] * len(many)}),
                f"at most {MAX_SUPPORT_FILES} files")
        big = upload[:1] + [("files", ("huge.png", b"\0" * (MAX_IMAGE_BYTES + 1), "image/png"))]
        refused(client.post("/api/adapt", files=big, data={"labels": ["black", "white"]}),
                "huge.png is 32.0 MB", f"at most {MAX_IMAGE_BYTES // 2**20} MB")
        text = upload[:1] + [("files", ("notes.txt", b"hello", "text/plain"))]
        refused(client.post("/api/adapt", files=text, data={"labels": ["black", "white"]}),
                "notes.txt is not an image file")
        fake = upload[:1] + [("files", ("fake.png", b"not a png at all", "image/png"))]
        refused(client.post("/api/adapt", files=fake, data={"labels": ["black", "white"]}),
                "fake.png is not an image PIL can read")
        one_class, one_fields = support_form(pictures, ["black"])
        refused(client.post("/api/adapt", files=one_class, data=one_fields),
                "one class ('black')", "at least 2 classes")
        refused(client.post("/api/adapt", files=upload, data={"labels": ["black"]}),
                "6 files but 1 labels")
        refused(client.post("/api/adapt", files=upload, data={"labels": [""] * 6}),
                "has no class name")
        refused(client.post("/api/adapt", data={"labels": "a"}), "no support images")
        refused(client.post("/api/adapt", files=upload, data=fields | {"steps": "many"}),
                'steps is "many"')
        refused(client.post("/api/predict", files=files(pictures["query"][:1])), "adapt first")

        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        queries = [("files", (f"{i}.png", b"x", "image/png")) for i in range(MAX_QUERY_FILES + 1)]
        refused(client.post("/api/predict", files=queries), f"at most {MAX_QUERY_FILES} files")
        refused(client.post("/api/predict", files=files(pictures["query"][:1]),
                            data={"reject_below": "2"}), 'reject_below is "2"')
        refused(client.post("/api/predict", json={"texts": ["hello"]}), "no query images")
        # a refused adapt leaves the fitted classes as they were
        assert client.get("/api/model").json()["classes"] == CLASSES


def test_a_second_job_while_one_runs_is_refused_and_progress_says_what_runs(run, pictures):
    app = create_app(run)
    release, entered = threading.Event(), threading.Event()
    real_fit = app.state.model.fit

    def slow_fit(*args, **kwargs):  # holds the job until the test has looked at it
        entered.set()
        assert release.wait(30)
        return real_fit(*args, **kwargs)

    app.state.model.fit = slow_fit
    upload, fields = support_form(pictures)
    with local_client(app) as client:
        first = threading.Thread(target=lambda: client.post("/api/adapt", files=upload,
                                                            data=fields))
        first.start()
        try:
            assert entered.wait(30)
            state = client.get("/api/progress").json()
            assert state == {"stage": "adapting to 6 examples", "done": 0, "total": 0,
                             "running": True}
            second = client.post("/api/adapt", files=upload, data=fields)
            assert second.status_code == 409
            assert second.json()["error"].startswith("busy: adapting to 6 examples")
        finally:
            release.set()
            first.join(30)
        assert client.get("/api/model").json()["classes"] == CLASSES


def test_a_saved_model_serves_its_classes_at_once(run, pictures, tmp_path):
    model = FewShotClassifier.from_run(run)
    model.fit([(path, kind) for kind in CLASSES for path in pictures[kind]])
    saved = model.save(tmp_path / "model")
    with local_client(create_app(saved)) as client:
        described = client.get("/api/model").json()
        assert described["fitted"] and described["classes"] == CLASSES
        assert described["examples"] == 6
        answer = client.post("/api/predict", files=files(pictures["query"][4:5]))
        assert answer.json()["predictions"][0]["label"] == "white"


def test_uploads_are_removed_at_shutdown_unless_kept(run, pictures, tmp_path):
    upload, fields = support_form(pictures)
    app = create_app(run)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        stored = sorted(p.name for p in app.state.uploads.rglob("*.png"))
        assert len(stored) == 6 and stored[0].endswith("black-0.png")
    assert not app.state.uploads.exists()

    keep = tmp_path / "kept"
    for _ in range(2):  # a folder serve made is reused: each request in a new sub-folder
        app = create_app(run, keep=keep)
        with local_client(app) as client:
            assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
    assert (keep / KEEP_MARKER).is_file()
    assert sorted(p.name for p in keep.iterdir()) == [KEEP_MARKER, "adapt-0001", "adapt-0002"]
    assert len(list((keep / "adapt-0002").glob("*.png"))) == 6

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file")
    with pytest.raises(InputError, match="not empty and was not made by attnmeta serve"):
        create_app(run, keep=mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_port_in_use_is_one_line():
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(InputError, match=r"cannot listen on 127\.0\.0\.1:\d+: "):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


@needs_real_data
def test_a_text_model_adapts_on_sentences_and_never_reads_a_query_as_a_file(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("ATTNMETA_DATA", str(REAL_DATA))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = config_from_dict(tiny_text_config("clinc150", "matching", steps=2))
    train_run(config, tmp_path / "run", progress=False, will_evaluate=False)
    examples = [{"text": "what is my balance", "label": "balance"},
                {"text": "how much money do i have", "label": "balance"},
                {"text": "book a table for two", "label": "restaurant"},
                {"text": "reserve dinner at eight", "label": "restaurant"}]
    app = create_app(tmp_path / "run")
    with local_client(app) as client:
        assert client.get("/api/model").json()["modality"] == "text"
        answer = client.post("/api/adapt", json={"examples": examples})
        assert answer.json() == {"classes": ["balance", "restaurant"], "examples": 4}
        csv_text = "text,label\n" + "".join(f"{e['text']},{e['label']}\n" for e in examples)
        answer = client.post("/api/adapt",
                             files=[("file", ("s.csv", csv_text.encode(), "text/csv"))])
        assert answer.json() == {"classes": ["balance", "restaurant"], "examples": 4}

        secret = tmp_path / "secret.txt"
        secret.write_text("line one\nline two\n")
        answer = client.post("/api/predict", json={"texts": ["my balance please", str(secret)],
                                                   "explain": True, "top_k": 1})
        predictions = answer.json()["predictions"]
        assert [p["input"] for p in predictions] == ["my balance please", str(secret)]
        assert all(p["label"] in ("balance", "restaurant") and len(p["top_k"]) == 1
                   for p in predictions)
        assert base64.b64decode(predictions[0]["explanation_png"]).startswith(b"\x89PNG")
        # the path was classified as the sentence it is (its tokens), not read as a file
        model = app.state.model
        tokens = model.tokenizer.encode_batch([str(secret)], model.preprocessing.max_length)
        own = torch.softmax(model.logits(tokens)[0].float(), -1).max()
        assert predictions[1]["probability"] == pytest.approx(float(own), abs=1e-6)
        refused(client.post("/api/adapt", json={"examples": examples[:2]}), "one class")
        refused(client.post("/api/adapt", json={"examples": [{"text": " ", "label": "a"}]}),
                "example 0", "non-empty sentence")
        refused(client.post("/api/predict", json={"texts": "just one"}), "no texts")
        refused(client.post("/api/predict", json={"texts": ["x" * 5000]}), "5000 characters")


# ----------------------------------------------------------------- the page in Chromium
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def server(run, tmp_path):
    """The real server (uvicorn) on a free port of 127.0.0.1, in a thread; its URL."""
    import uvicorn

    app = create_app(run)
    sock = bind("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    deadline = time.monotonic() + 30
    while not uv.started:  # uvicorn's own flag: listening
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}/"
    uv.should_exit = True
    thread.join(30)
    sock.close()
    assert not app.state.uploads.exists()  # the real shutdown removed the uploads


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them: "
                           "apt-get install chromium chromium-driver)")
def test_the_page_in_headless_chromium_adapts_and_shows_the_known_class(server, pictures,
                                                                       tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    started = time.monotonic()
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        driver.find_element(By.ID, "add-class").click()  # two rows to start with: a third
        for index, kind in enumerate(CLASSES):
            driver.find_element(By.ID, f"class-name-{index}").send_keys(kind)
            driver.find_element(By.ID, f"class-files-{index}").send_keys(
                "\n".join(str(path) for path in pictures[kind]))
        driver.find_element(By.ID, "adapt").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "classes"), ", ".join(CLASSES)))
        assert not driver.find_element(By.ID, "error").is_displayed()
        assert "adapted" in driver.find_element(By.ID, "progress-text").text

        query = pictures["query"][2]  # a stripes query
        driver.find_element(By.ID, "query-files").send_keys(str(query))
        driver.find_element(By.ID, "predict").click()
        label = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "#results tbody tr td.label")))
        assert label.text == "stripes"
        row = driver.find_element(By.CSS_SELECTOR, "#results tbody tr")
        assert row.find_element(By.CSS_SELECTOR, "td.input").text == query.name
        picture_shown = wait.until(lambda d: d.execute_script(
            "const i = document.querySelector('#results img.explanation');"
            "return i && i.complete && i.naturalWidth > 0;"))
        assert picture_shown

        # an upload the server refuses: its one line on the page, in the visible #error
        fake = tmp_path / "fake.png"
        fake.write_text("not a picture")
        driver.find_element(By.ID, "add-class").click()
        driver.find_element(By.ID, "class-name-3").send_keys("fake")
        driver.find_element(By.ID, "class-files-3").send_keys(str(fake))
        driver.find_element(By.ID, "adapt").click()
        error = wait.until(ec.visibility_of_element_located((By.ID, "error")))
        assert "fake.png is not an image PIL can read" in error.text
        assert driver.find_element(By.ID, "classes").text == ", ".join(CLASSES)  # kept
    finally:
        driver.quit()
    print(f"chromium session: {time.monotonic() - started:.1f} s")
