"""attnmeta serve over a built-in encoder (efficientnet-lite0: cosine prototypes over frozen
ImageNet features, no training) on real colour photos, scikit-image's samples (a cat, a
coffee cup, a rocket, an astronaut; each as itself and mirrored): the support set shown back
as thumbnails per class, served from the server's own uploads, and the page in real headless
Chromium classifying a held-out crop of the cat with its explanation at a readable size.

With ``ATTNMETA_SCREENSHOT=docs/serve_photos.png`` the Chromium test also saves the page,
once the explanation is shown, for the README.
"""

from __future__ import annotations

import base64
import io
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from attnmeta.fewshot.serve import THUMBNAIL_PIXELS, create_app
from support import make_photo_folder
from test_serve import CHROMEDRIVER, CHROMIUM, local_client
from test_serve import server  # noqa: F401  (a fixture)

CLASSES = ["astronaut", "cat", "coffee", "rocket"]  # the model's order: sorted
SUPPORT_NAMES = ["photo.jpg", "mirrored.jpg"]  # make_photo_folder's two per class


@pytest.fixture(scope="module")
def run() -> str:
    """What test_serve's ``server`` fixture serves here: the built-in encoder."""
    return "efficientnet-lite0"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


def square(image: Image.Image) -> np.ndarray:
    """The centre square at the thumbnail's size, as a person would cut it (PIL's own
    ImageOps.fit, not the server's code), as floats in [0, 255]."""
    return np.asarray(ImageOps.fit(image.convert("RGB"),
                                   (THUMBNAIL_PIXELS, THUMBNAIL_PIXELS)), dtype=np.float32)


def nearest_support_image(thumbnail: bytes, support: Path) -> Path:
    """Which of the support files the thumbnail shows: the one nearest it pixel by pixel."""
    shown = square(Image.open(io.BytesIO(thumbnail)))
    files = sorted(support.glob("*/*.jpg"))
    distances = [np.abs(square(Image.open(path)) - shown).mean() for path in files]
    return files[int(np.argmin(distances))]


def support_upload(support: Path, classes=CLASSES):
    upload, labels = [], []
    for kind in classes:
        for name in SUPPORT_NAMES:
            path = support / kind / name
            upload.append(("files", (name, path.read_bytes(), "image/jpeg")))
            labels.append(kind)
    return upload, {"labels": labels}


def test_the_support_set_comes_back_per_class_with_thumbnails_of_the_uploads(photos):
    support, _ = photos
    with local_client(create_app("efficientnet-lite0")) as client:
        assert client.get("/api/support").json() == {"classes": []}  # nothing adapted here
        missing = client.get("/api/support/0/0")
        assert missing.status_code == 404 and "\n" not in missing.json()["error"]

        upload, fields = support_upload(support)
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        shown = client.get("/api/support").json()["classes"]
        assert [group["name"] for group in shown] == CLASSES
        for group in shown:
            assert [e["name"] for e in group["examples"]] == SUPPORT_NAMES
            for example in group["examples"]:
                answer = client.get(example["thumbnail"])
                assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
                assert Image.open(io.BytesIO(answer.content)).size == (THUMBNAIL_PIXELS,) * 2
                assert nearest_support_image(answer.content, support) == (
                    support / group["name"] / example["name"])
        old = shown[0]["examples"][0]["thumbnail"]

        # a refused adapt keeps the set; a new one replaces it, and the old URLs go
        refused = client.post("/api/adapt", files=upload[:2], data={"labels": ["x", "x"]})
        assert refused.status_code == 400
        assert client.get(old).status_code == 200
        upload, fields = support_upload(support, ["cat", "rocket"])
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        shown = client.get("/api/support").json()["classes"]
        assert [group["name"] for group in shown] == ["cat", "rocket"]
        gone = client.get(old)
        assert gone.status_code == 404
        assert gone.json()["error"].startswith("no support image 0 of adapt 1: this server "
                                               "holds adapt 2's 4")
        for bad in ("4", "-1", "x", "%C2%B2"):  # past the end, not a number, a unicode digit
            assert client.get(f"/api/support/2/{bad}").status_code == 404, bad


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them: "
                           "apt-get install chromium chromium-driver)")
def test_the_page_on_real_photos_shows_thumbnails_the_label_and_a_readable_explanation(
        server, photos):  # noqa: F811  (server: the imported fixture)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    support, queries = photos
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    started = time.monotonic()
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert not driver.find_element(By.ID, "fitted-support").is_displayed()  # none yet
        for _ in range(len(CLASSES) - 2):  # two rows to start with
            driver.find_element(By.ID, "add-class").click()
        for index, kind in enumerate(["cat", "coffee", "rocket", "astronaut"]):
            driver.find_element(By.ID, f"class-name-{index}").send_keys(kind)
            driver.find_element(By.ID, f"class-files-{index}").send_keys(
                "\n".join(str(support / kind / name) for name in SUPPORT_NAMES))
        driver.find_element(By.ID, "adapt").click()
        wait.until(ec.visibility_of_element_located((By.ID, "fitted-support")))
        assert driver.find_element(By.ID, "classes").text == ", ".join(CLASSES)
        assert not driver.find_element(By.ID, "error").is_displayed()

        # a row per class: its name, then one loaded thumbnail per support image, each the
        # right photo (fetched again from the same URL and matched to the files)
        rows = driver.find_elements(By.CSS_SELECTOR, "#fitted-rows .fitted-class")
        assert [row.find_element(By.CSS_SELECTOR, ".fitted-class-name").text
                for row in rows] == CLASSES
        wait.until(lambda d: d.execute_script(
            "const all = Array.from(document.querySelectorAll('#fitted-rows img.thumbnail'));"
            "return all.length > 0 && all.every((i) => i.complete && i.naturalWidth > 0);"))
        for row, kind in zip(rows, CLASSES):
            thumbnails = row.find_elements(By.CSS_SELECTOR, "img.thumbnail")
            assert [t.get_attribute("title") for t in thumbnails] == SUPPORT_NAMES, kind
            for thumbnail, name in zip(thumbnails, SUPPORT_NAMES):
                assert thumbnail.size == {"width": 64, "height": 64}
                source = thumbnail.get_attribute("src")
                assert source.startswith(server + "api/support/"), source  # its own store
                with urllib.request.urlopen(source, timeout=30) as answer:
                    assert nearest_support_image(answer.read(), support) == support / kind / name

        query = queries / "cat.jpg"  # a crop of the cat none of the support images is
        driver.find_element(By.ID, "query-files").send_keys(str(query))
        driver.find_element(By.ID, "predict").click()
        label = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "#results tbody tr td.label")))
        assert label.text == "cat"
        assert driver.find_element(By.CSS_SELECTOR, "#results td.top-k").text.startswith("cat ")
        wait.until(lambda d: d.execute_script(
            "const i = document.querySelector('#results img.explanation');"
            "return i && i.complete && i.naturalWidth > 0;"))
        natural, shown, room = driver.execute_script(
            "const i = document.querySelector('#results img.explanation');"
            "return [i.naturalWidth, i.getBoundingClientRect().width,"
            "        document.querySelector('#results').getBoundingClientRect().width];")
        assert natural > 600, natural
        # at its natural width (its text sized to be read), shrunk only where the page is
        # narrower: a 1280 px window has room for the whole ~1100 px
        assert room >= natural and abs(shown - natural) < 1, (natural, shown, room)

        # everything the page loaded came from this server (data: URLs aside)
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)"
            ".concat(Array.from(document.images).map((i) => i.src));")
        assert all(url.startswith((server, "data:")) for url in loaded), loaded

        if os.environ.get("ATTNMETA_SCREENSHOT"):
            save_screenshot(driver, Path(os.environ["ATTNMETA_SCREENSHOT"]))
    finally:
        driver.quit()
    print(f"chromium session: {time.monotonic() - started:.1f} s")


def save_screenshot(driver, path: Path) -> None:
    """The whole page (Chromium's own full-page capture), as a 256-colour PNG: small enough
    for a README, and the photos lose little."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    picture = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    picture.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
