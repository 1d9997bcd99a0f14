"""attnmeta serve's request fields, each read by one typed reader (attnmeta.fewshot.fields):
a value that is not exactly its type is a 400 line naming the field as the API names it
(never a CLI flag), valid values still work; and the fitted model's download (GET
/api/model/download): a zip of the folder FewShotClassifier.save writes, which load and
``attnmeta predict`` read back to the server's own predictions, offered to a browser's own
page only, and the page's Save button in headless Chromium.

The models are test_serve's 2-step ProtoNet run (its fixtures imported), a 2-step MAML run
(whose inner steps a request may set) and, for JSON bodies a text model reads, the built-in
wordllama encoder.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fastapi.testclient import TestClient

from attnmeta.fewshot import FewShotClassifier
from attnmeta.fewshot.fields import MAX_STEPS
from attnmeta.fewshot.guards import PAGE_HEADER
from attnmeta.fewshot.serve import DOWNLOAD_PATH, create_app
from test_serve import CHROMEDRIVER, CHROMIUM, CLASSES, files, local_client, refused, support_form
from test_serve import pictures, run, server  # noqa: F401  (fixtures)

MULTIPART_STEPS = ["true", "1e300", "-1", "2.5", "many", " 2", str(MAX_STEPS + 1)]
MULTIPART_TOP_K = ["1.9", "true", "0", "-1", str(10**9), "4", "2x", "+2"]
MULTIPART_EXPLAIN = ["maybe", "2", "on", "yes", "TRUE"]
MULTIPART_REJECT = ["1.5", "x", "-0.1", "nan", "inf", "1e400", "0_5"]
JSON_STEPS = [True, 1e300, -1, 2.5, "2", MAX_STEPS + 1]
JSON_TOP_K = [1.9, True, "3", 0, -1, 10**9, 4, [2], {"k": 2}]
JSON_EXPLAIN = ["maybe", 2, 1, "true", [True]]
JSON_REJECT = [1.5, "x", "0.5", -0.1, True]


def field_refused(response, field: str, *expected: str) -> str:
    """A 400 line about ``field``, named as the API names it (never ``--top-k``)."""
    message = refused(response, f"{field} ", *expected)
    assert message.startswith(field), message
    assert "--" not in message, message
    return message


@pytest.fixture(scope="module")
def maml_run(tmp_path_factory) -> Path:
    from attnmeta.runs.episodic import train_run
    from support import make_image_folder, tiny_config

    config = tiny_config(make_image_folder(tmp_path_factory.mktemp("maml-images")), "maml",
                         steps=2)
    config.train.eval_every = 0
    folder = tmp_path_factory.mktemp("runs") / "maml"
    train_run(config, folder, progress=False, will_evaluate=False)
    return folder


def test_form_fields_are_refused_unless_exactly_their_type(run, pictures):  # noqa: F811
    upload, labels = support_form(pictures)
    queries = files(pictures["query"][:2])
    with local_client(create_app(run)) as client:
        for steps in MULTIPART_STEPS:
            field_refused(client.post("/api/adapt", files=upload, data=labels | {"steps": steps}),
                          "steps", f"is {json.dumps(steps)}", f"from 0 to {MAX_STEPS}")
        assert client.get("/api/progress").json()["stage"] == "idle"  # nothing was fitted
        assert client.post("/api/adapt", files=upload, data=labels).status_code == 200

        for top_k in MULTIPART_TOP_K:
            field_refused(client.post("/api/predict", files=queries, data={"top_k": top_k}),
                          "top_k", f"is {json.dumps(top_k)}",
                          "from 1 to 3 (the number of fitted classes)")
        for explain in MULTIPART_EXPLAIN:
            field_refused(client.post("/api/predict", files=queries, data={"explain": explain}),
                          "explain", "expected true, false, 1 or 0")
        for reject in MULTIPART_REJECT:
            field_refused(client.post("/api/predict", files=queries,
                                      data={"reject_below": reject}),
                          "reject_below", "expected a probability from 0 to 1")
        field_refused(client.post("/api/predict", files=queries, data={"top_k": ["2", "3"]}),
                      "top_k", "sent 2 times")
        field_refused(client.post("/api/predict", files=queries + [
            ("top_k", ("k.txt", b"2", "text/plain"))]), "top_k", "is a file")
        refused(client.post("/api/predict", files=queries, data={"topk": "2"}),
                '"topk" is not a field of POST /api/predict', "top_k")
        refused(client.post("/api/adapt", files=upload, data=labels | {"step": "1"}),
                '"step" is not a field of POST /api/adapt', "steps")

        # the values the API documents still work, empty form values are absent
        for data in ({"top_k": "2", "explain": "0"}, {"top_k": "2", "explain": "false"},
                     {"top_k": "2", "reject_below": "0"}, {"top_k": "2", "reject_below": ""}):
            answer = client.post("/api/predict", files=queries, data=data)
            assert answer.status_code == 200, (data, answer.text)
            predictions = answer.json()["predictions"]
            assert all(len(p["top_k"]) == 2 and "explanation_png" not in p
                       for p in predictions)
            assert [p["label"] for p in predictions] == ["black", "black"]
        answer = client.post("/api/predict", files=queries[:1],
                             data={"top_k": "3", "explain": "1", "reject_below": "1"})
        prediction = answer.json()["predictions"][0]
        assert prediction["label"] is None and len(prediction["top_k"]) == 3  # all rejected
        assert base64.b64decode(prediction["explanation_png"]).startswith(b"\x89PNG")
        answer = client.post("/api/predict", files=queries[:1],
                             data={"reject_below": "2.5e-1", "explain": "true"})
        assert answer.json()["predictions"][0]["label"] == "black"
        assert client.get("/api/model").json()["classes"] == CLASSES


def test_a_class_name_with_a_nul_or_a_line_break_is_one_400_line(run, pictures):  # noqa: F811
    """Checked where every support set is read (inputs.check_class_name): the server's
    answer is its one line, and the fitted classes stay as they were."""
    upload, labels = support_form(pictures)
    with local_client(create_app(run)) as client:
        assert client.post("/api/adapt", files=upload, data=labels).status_code == 200
        for bad, what in (("bl\nack", "a line break"), ("bl\x00ack", "a NUL character"),
                          ("bl\rack", "a carriage return")):
            named = {"labels": [bad if label == "black" else label
                                for label in labels["labels"]]}
            message = refused(client.post("/api/adapt", files=upload, data=named),
                              "class name", what, "expected a name on one line")
            assert "\x00" not in message and "\r" not in message
        assert client.get("/api/model").json()["classes"] == CLASSES


def test_json_fields_keep_their_json_types(run, pictures):  # noqa: F811
    """JSON numbers only (not true, not "3"), JSON booleans only: refused before anything
    else is read (here an image model, whose queries JSON cannot carry)."""
    with local_client(create_app(run)) as client:
        for steps in JSON_STEPS:
            field_refused(client.post("/api/adapt", json={"steps": steps}), "steps",
                          f"is {json.dumps(steps)}", f"from 0 to {MAX_STEPS}")
        assert client.post("/api/adapt", json={"steps": 0}).json()["error"].startswith(
            "no support images")  # steps read (valid), then the support set
        for body in ({"texts": ["x"]}, {"texts": ["x"], "top_k": 2}):
            refused(client.post("/api/predict", json=body), "adapt first")
    upload_app = create_app(run)
    with local_client(upload_app) as client:
        upload, labels = support_form(pictures, ["black", "white"])
        assert client.post("/api/adapt", files=upload, data=labels).status_code == 200
        for top_k in JSON_TOP_K:
            message = field_refused(client.post("/api/predict", json={"top_k": top_k}),
                                    "top_k", "from 1 to 2 (the number of fitted classes)")
            assert ("(a JSON number, not a string)" in message) == isinstance(top_k, str)
        for explain in JSON_EXPLAIN:
            field_refused(client.post("/api/predict", json={"explain": explain}), "explain",
                          "expected true or false (JSON booleans)")
        for reject in JSON_REJECT:
            field_refused(client.post("/api/predict", json={"reject_below": reject}),
                          "reject_below", "expected a probability from 0 to 1")
        field_refused(client.post("/api/predict", json={"top_k": 1.9}), "top_k", "is 1.9")
        field_refused(client.post("/api/predict", json={"top_k": True}), "top_k", "is true")
        field_refused(client.post("/api/predict", json={"top_k": "3"}), "top_k", 'is "3"')
        field_refused(client.post("/api/adapt", json={"steps": 1e300}), "steps", "is 1e+300")
        field_refused(client.post("/api/predict", json={"explain": "maybe"}), "explain",
                      'is "maybe"')
        refused(client.post("/api/predict", json={"texts": [], "top-k": 2}),
                '"top-k" is not a field of POST /api/predict')
        # valid JSON values pass the fields and reach the queries (none for an image model)
        refused(client.post("/api/predict", json={"top_k": 2, "explain": False,
                                                  "reject_below": 0.5, "texts": ["x"]}),
                "no query images")
        refused(client.post("/api/predict", json={"top_k": 2.0, "explain": None,
                                                  "reject_below": 1, "texts": ["x"]}),
                "no query images")


def test_a_text_model_reads_valid_json_fields(tmp_path):
    pytest.importorskip("wordllama")
    examples = [{"text": "book a flight to paris", "label": "travel"},
                {"text": "flights to rome please", "label": "travel"},
                {"text": "what is my balance", "label": "bank"},
                {"text": "how much money is in my account", "label": "bank"}]
    with local_client(create_app("wordllama")) as client:
        assert client.post("/api/adapt", json={"examples": examples}).status_code == 200
        texts = ["i want to fly to berlin", "check my account balance"]
        answer = client.post("/api/predict", json={"texts": texts, "top_k": 2,
                                                   "explain": False, "reject_below": 0})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["label"] for p in predictions] == ["travel", "bank"]
        assert all(len(p["top_k"]) == 2 for p in predictions)
        answer = client.post("/api/predict", json={"texts": texts[:1], "top_k": 1})
        assert len(answer.json()["predictions"][0]["top_k"]) == 1
        field_refused(client.post("/api/predict", json={"texts": texts, "top_k": 3}),
                      "top_k", "is 3", "from 1 to 2")
        field_refused(client.post("/api/predict", json={"texts": texts, "explain": "yes"}),
                      "explain", 'is "yes"')
        bad = examples[:3] + [{"text": "how much money is in my account", "label": "ba\nnk"}]
        message = refused(client.post("/api/adapt", json={"examples": bad}), "class name",
                          "a line break")
        assert "\r" not in message


def test_a_gradient_learner_takes_valid_inner_steps(maml_run, pictures):  # noqa: F811
    upload, labels = support_form(pictures)
    with local_client(create_app(maml_run)) as client:
        for steps in ("0", "1", "3"):
            answer = client.post("/api/adapt", files=upload, data=labels | {"steps": steps})
            assert answer.status_code == 200, (steps, answer.text)
        assert client.app.state.model.steps == 3
        field_refused(client.post("/api/adapt", files=upload, data=labels | {"steps": "2.5"}),
                      "steps", 'is "2.5"')
        field_refused(client.post("/api/adapt", files=upload,
                                  data=labels | {"steps": str(MAX_STEPS + 1)}),
                      "steps", f"from 0 to {MAX_STEPS}")
        assert client.app.state.model.steps == 3  # a refused adapt changed nothing


# ------------------------------------------------------------------------ the download
def unzipped(data: bytes, into: Path) -> Path:
    """The model folder inside the downloaded zip, extracted under ``into``."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names and all(name.startswith("attnmeta-model/") for name in names), names
        assert {"attnmeta-model/model.json", "attnmeta-model/model.safetensors"} <= set(names)
        archive.extractall(into)
    return into / "attnmeta-model"


def server_probabilities(predictions: list[dict]) -> list[dict[str, float]]:
    return [dict(map(tuple, p["top_k"])) for p in predictions]


@pytest.mark.parametrize("learner", ["protonet", "maml"])
def test_the_downloaded_model_predicts_as_the_server_does(learner, run, maml_run,  # noqa: F811
                                                          pictures, tmp_path):
    from attnmeta.cli import main

    upload, labels = support_form(pictures)
    steps = {"steps": "1"} if learner == "maml" else {}
    with local_client(create_app(run if learner == "protonet" else maml_run)) as client:
        nothing = client.get(DOWNLOAD_PATH)
        assert nothing.status_code == 409
        assert nothing.json()["error"].startswith("nothing to download: no classes yet")
        assert "\n" not in nothing.json()["error"]
        assert client.post("/api/adapt", files=upload, data=labels | steps).status_code == 200
        answer = client.get(DOWNLOAD_PATH)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        assert answer.headers["content-disposition"] == (
            'attachment; filename="attnmeta-model.zip"')
        expected = client.post("/api/predict", files=files(pictures["query"]),
                               data={"top_k": "3"}).json()["predictions"]

    folder = unzipped(answer.content, tmp_path / "unzipped")
    loaded = FewShotClassifier.load(folder)
    assert loaded.class_names == CLASSES and len(loaded.support.labels) == 6
    assert loaded.steps == (1 if learner == "maml" else None)
    probabilities = loaded.predict_proba(pictures["query"])
    for row, record in zip(probabilities, server_probabilities(expected)):
        assert {name: float(p) for name, p in zip(CLASSES, row)} == pytest.approx(
            record, abs=2e-6)
    assert loaded.predict(pictures["query"]) == [p["label"] for p in expected]

    printed = CliRunner().invoke(main, ["predict", str(folder), "--json", "--top-k", "3",
                                        *map(str, pictures["query"])])
    assert printed.exit_code == 0, printed.output
    records = [json.loads(line) for line in printed.output.splitlines()]
    assert [r | {"input": Path(r["input"]).name} for r in records] == expected  # a path there


def test_the_download_answers_only_the_page_or_a_script_with_the_token(run,  # noqa: F811
                                                                      pictures):  # noqa: F811
    made = set(Path(tempfile.gettempdir()).glob("attnmeta-download-*"))
    app = create_app(run)
    upload, labels = support_form(pictures)
    with local_client(app) as client:
        assert client.post("/api/adapt", files=upload, data=labels).status_code == 200
        assert client.get(DOWNLOAD_PATH).status_code == 200  # the token
    bare = TestClient(app, base_url="http://127.0.0.1")  # no token
    with bare:
        for headers, part in (({}, "needs the token"),
                              ({"Sec-Fetch-Site": "cross-site"}, "from another site refused"),
                              ({"Sec-Fetch-Site": "same-site"}, "from another site refused"),
                              ({"Sec-Fetch-Site": "cross-site", PAGE_HEADER: "save"},
                               "from another site refused"),
                              ({"Origin": "http://evil.example"}, "cross-origin GET refused"),
                              ({"X-Attnmeta-Token": "wrong"}, "wrong X-Attnmeta-Token")):
            answer = bare.get(DOWNLOAD_PATH, headers=headers)
            assert answer.status_code == 403, (headers, answer.text)
            assert part in answer.json()["error"] and "\n" not in answer.json()["error"]
        for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                        {PAGE_HEADER: "save"}, {"Origin": "http://127.0.0.1"}):
            answer = bare.get(DOWNLOAD_PATH, headers=headers)
            assert answer.status_code == 200, (headers, answer.text)
            assert answer.content.startswith(b"PK")
        assert bare.get("/api/model").status_code == 200  # other GETs: as before
        foreign = bare.get(DOWNLOAD_PATH, headers={"Host": "evil.example",
                                                   "Sec-Fetch-Site": "same-origin"})
        assert foreign.status_code == 403 and "is not allowed" in foreign.json()["error"]
    # each download's folder (the saved model, the zip) is removed once it is sent
    assert set(Path(tempfile.gettempdir()).glob("attnmeta-download-*")) == made


# -------------------------------------------------------- the Save button in Chromium
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_page_saves_the_adapted_model(server, pictures, tmp_path):  # noqa: F811
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"  # where Chromium may put the file: not asserted on
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert not driver.find_element(By.ID, "save-model").is_displayed()  # nothing fitted
        for index, kind in enumerate(["black", "white"]):
            driver.find_element(By.ID, f"class-name-{index}").send_keys(kind)
            driver.find_element(By.ID, f"class-files-{index}").send_keys(
                "\n".join(str(path) for path in pictures[kind]))
        driver.find_element(By.ID, "adapt").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "classes"), "black, white"))
        save = wait.until(ec.visibility_of_element_located((By.ID, "save-model")))
        save.click()
        link = driver.find_element(By.ID, "save-link")
        wait.until(lambda d: (link.get_attribute("href") or "").startswith("blob:"))
        assert link.get_attribute("download") == "attnmeta-model.zip"
        assert not driver.find_element(By.ID, "error").is_displayed()
        data = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(document.getElementById('save-link').href).then((r) => r.arrayBuffer())"
            ".then((b) => { let s = ''; for (const x of new Uint8Array(b)) "
            "s += String.fromCharCode(x); done(btoa(s)); });")
    finally:
        driver.quit()
    loaded = FewShotClassifier.load(unzipped(base64.b64decode(data), tmp_path / "unzipped"))
    assert loaded.class_names == ["black", "white"]
    assert loaded.predict([pictures["query"][0], pictures["query"][4]]) == ["black", "white"]
    assert torch.isfinite(loaded.predict_proba(pictures["query"])).all()
