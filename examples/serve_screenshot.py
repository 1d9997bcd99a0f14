"""A picture of ``attnmeta serve``'s page after a prediction, taken in headless Chromium
(what the README shows):

    python examples/serve_screenshot.py MODEL_DIR QUERY_IMAGE... --out docs/serve_page.png

MODEL_DIR is an adapted model (``attnmeta adapt --out``); the page predicts the queries
with their attention pictures and the window is saved as a PNG. Needs Debian's
``chromium`` and ``chromium-driver`` and ``pip install 'attnmeta[serve]' selenium``.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from attnmeta.fewshot.serve import bind, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("queries", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(args.model), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1500"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        wait = WebDriverWait(driver, 120)
        while not server.started:
            threading.Event().wait(0.05)
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        driver.find_element(By.ID, "query-files").send_keys(
            "\n".join(str(q.resolve()) for q in args.queries))
        driver.find_element(By.ID, "predict").click()
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#results td.label")))
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#results img.explanation')]"
            ".every(i => i.complete && i.naturalWidth > 0);"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
