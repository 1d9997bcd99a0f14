"""attnmeta serve against a hostile web page and slow clients (attnmeta.fewshot.guards):
a foreign Host (DNS rebinding) is refused on every endpoint, a cross-site POST changes
nothing, a script's POST needs the token, a stalled upload holds no lock and gets 408
after its deadline (a real uvicorn server and a raw socket), and the bodies that used to
be HTTP 500 (a decompression-bomb header, deep or non-finite JSON) are one 400 line.

The model is test_serve's 2-step ProtoNet run, its fixtures imported.
"""

from __future__ import annotations

import contextlib
import io
import json
import select
import socket
import struct
import threading
import time
import zlib
from typing import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from attnmeta.fewshot.guards import TOKEN_HEADER
from attnmeta.fewshot.serve import bind, create_app, hosts_to_allow
from test_serve import CLASSES, files, local_client, refused, support_form
from test_serve import pictures, run  # noqa: F401  (fixtures)

ENDPOINTS = [("GET", "/"), ("HEAD", "/"), ("GET", "/api/model"), ("GET", "/api/progress"),
             ("GET", "/api/support"), ("GET", "/api/support/1/0"), ("GET", "/no/such/page"),
             ("POST", "/api/adapt"), ("POST", "/api/predict")]


def one_line(response, status: int, *expected: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    assert "\n" not in message and "detail" not in response.json()
    for part in expected:
        assert part in message, message
    return message


# --------------------------------------------------------------------- Host (rebinding)
def test_a_foreign_host_is_refused_on_every_endpoint_and_loopback_names_are_answered(run):
    app = create_app(run)
    with TestClient(app, headers={TOKEN_HEADER: app.state.token}) as client:
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                     "localhost.evil.example:8000", "[::2]:8000"):
            for method, path in ENDPOINTS:
                answer = client.request(method, path, headers={"Host": host})
                assert answer.status_code == 403, (host, method, path, answer.text)
                if method != "HEAD":
                    one_line(answer, 403, f"Host '{host}' is not allowed",
                             "127.0.0.1, localhost, [::1]", "--allow-host")
            assert str(run) not in client.get("/api/model", headers={"Host": host}).text

        for host in ("127.0.0.1", "127.0.0.1:8000", "localhost", "LocalHost:8000", "[::1]",
                     "[::1]:8000"):
            for path in ("/", "/api/model", "/api/progress", "/api/support"):
                answer = client.get(path, headers={"Host": host})
                assert answer.status_code == 200, (host, path, answer.text)

    # Python users name their own: exactly those are answered
    app = create_app(run, allowed_hosts=["box.lan", "[fd00::5]"])
    with TestClient(app) as client:
        assert client.get("/api/model", headers={"Host": "box.lan:8000"}).status_code == 200
        assert client.get("/api/model", headers={"Host": "[fd00::5]:80"}).status_code == 200
        one_line(client.get("/api/model", headers={"Host": "localhost"}), 403,
                 "answers box.lan, [fd00::5]")


def test_the_names_a_server_answers_follow_its_host_and_allow_host():
    assert hosts_to_allow("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert hosts_to_allow("192.168.1.5") == ["127.0.0.1", "localhost", "::1", "192.168.1.5"]
    # every address: the literal a URL may carry, never a name unless the user adds it
    assert hosts_to_allow("0.0.0.0", ["Box.lan"]) == ["127.0.0.1", "localhost", "::1",
                                                      "0.0.0.0", "box.lan"]
    assert hosts_to_allow("::", ["[fd00::5]"]) == ["127.0.0.1", "localhost", "::1", "::",
                                                   "fd00::5"]


# --------------------------------------------------------------- Origin and the token
def test_a_cross_site_post_is_refused_and_changes_nothing(run, pictures):  # noqa: F811
    app = create_app(run)
    upload, fields = support_form(pictures)
    # the page as a browser sends it: Host and Origin of this server (port 8000), no token
    with TestClient(app, base_url="http://127.0.0.1:8000") as page:
        answer = page.post("/api/adapt", files=upload, data=fields,  # a script, first
                           headers={TOKEN_HEADER: app.state.token})
        assert answer.status_code == 200, answer.text
        cross_site_posts(app, page, pictures)


def cross_site_posts(app, page: TestClient, pictures) -> None:  # noqa: F811
    two, two_fields = support_form(pictures, ["black", "white"])
    own = {"Origin": "http://127.0.0.1:8000"}
    for origin in ("http://evil.example", "https://127.0.0.1:8000", "http://127.0.0.1:9999",
                   "http://localhost:8000", "null", "http://127.0.0.1:8000.evil.example"):
        answer = page.post("/api/adapt", files=two, data=two_fields,
                           headers={"Origin": origin})
        one_line(answer, 403, "cross-origin POST refused", f"Origin '{origin}'",
                 "http://127.0.0.1:8000")
        # the token does not make a foreign page's request its own
        answer = page.post("/api/predict", files=files(pictures["query"][:1]),
                           headers={"Origin": origin, TOKEN_HEADER: app.state.token})
        one_line(answer, 403, "cross-origin POST refused")
    assert page.get("/api/model").json()["classes"] == CLASSES  # not replaced
    assert page.get("/api/progress").json()["stage"] == "adapted"  # nothing else ran

    # no Origin (not a browser): the token or nothing
    one_line(page.post("/api/adapt", files=two, data=two_fields), 403,
             "POST /api/adapt needs the token", TOKEN_HEADER)
    one_line(page.post("/api/adapt", files=two, data=two_fields,
                       headers={TOKEN_HEADER: "guessed"}), 403, f"wrong {TOKEN_HEADER}")
    assert page.get("/api/model").json()["classes"] == CLASSES
    assert app.state.token not in page.get("/").text  # the page carries no secret

    # the page itself (same origin) adapts and predicts without any token
    answer = page.post("/api/adapt", files=two, data=two_fields, headers=own)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"classes": ["black", "white"], "examples": 4}
    answer = page.post("/api/predict", files=files(pictures["query"][:1]), headers=own)
    assert answer.json()["predictions"][0]["label"] == "black"


# ------------------------------------------------- bodies that were HTTP 500 (or huge)
def png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width x height`` grey pixels, with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                               8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF declaring ``width x height`` grey pixels in one 1-byte strip."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8 + 2 + 8 * 12 + 4), (278, 4, height), (279, 4, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                              else struct.pack("<I", value))
        for tag, kind, value in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00"


def test_an_upload_declaring_a_huge_image_is_one_400_line_naming_it(run, pictures):  # noqa: F811
    bombs = {"bomb.png": png_header(100_000, 100_000), "bomb.tif": tiff_header(200_000, 200_000)}
    for data in bombs.values():  # what the server meets: PIL refuses the header itself
        with pytest.raises(Image.DecompressionBombError):
            Image.open(io.BytesIO(data))
    upload, fields = support_form(pictures)
    with local_client(create_app(run)) as client:
        for name, data in bombs.items():
            bomb = [("files", (name, data, "image/png"))]
            refused(client.post("/api/adapt", files=upload[:1] + bomb,
                                data={"labels": ["black", "white"]}),
                    name, "too large to decode safely", "decompression bomb")
        assert client.post("/api/adapt", files=upload, data=fields).status_code == 200
        for name, data in bombs.items():
            refused(client.post("/api/predict", files=[("files", (name, data, "image/tiff"))]),
                    name, "too large to decode safely")
        assert client.get("/api/model").json()["classes"] == CLASSES


def test_deep_or_non_finite_json_is_400_and_a_large_body_413(run):
    json_headers = {"Content-Type": "application/json"}
    with local_client(create_app(run)) as client:
        for depth in (20, 1000, 100_000):  # 1000: json's own RecursionError
            deep = '{"texts": ' + "[" * depth + "]" * depth + "}"
            refused(client.post("/api/predict", content=deep, headers=json_headers),
                    "nested more than 16 levels")
        for path, body in (("/api/predict", '{"top_k": Infinity}'),
                           ("/api/adapt", '{"steps": Infinity}'),
                           ("/api/adapt", '{"steps": -Infinity}'),
                           ("/api/predict", '{"reject_below": NaN}')):
            refused(client.post(path, content=body, headers=json_headers),
                    "not a JSON number", "expected a finite number")
        refused(client.post("/api/adapt", content='{"steps": 1e400}', headers=json_headers),
                "1e400 is out of range")

        big = json.dumps({"texts": ["x" * 1000] * 5000})  # 5 MB
        one_line(client.post("/api/predict", content=big, headers=json_headers), 413,
                 "is 4.8 MB: expected at most 4 MB")
        # the same without a Content-Length (chunked): refused as it passes the limit
        chunks = (big[i:i + 2**16].encode() for i in range(0, len(big), 2**16))
        one_line(client.post("/api/predict", content=chunks, headers=json_headers), 413,
                 "MB or more: expected at most 4 MB")
        assert client.get("/api/progress").json()["stage"] == "idle"  # nothing ran


def test_404_and_405_are_one_error_line_and_head_answers_like_get(run):
    with local_client(create_app(run)) as client:
        one_line(client.get("/no/such/page"), 404, "not found: GET /no/such/page", "/api/model")
        one_line(client.delete("/api/model"), 405, "method not allowed: DELETE /api/model")
        page, head = client.get("/"), client.head("/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == page.headers["content-type"]
        assert int(head.headers["content-length"]) == len(page.content)


# ------------------------------------------------------------- a stalled upload (uvicorn)
@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` on a real uvicorn server on a free port of 127.0.0.1, in a thread; its URL."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()


def test_a_stalled_upload_holds_no_lock_and_gets_408_after_its_deadline(
        run, pictures):  # noqa: F811
    seconds = 3.0
    app = create_app(run, body_seconds=seconds)
    reading = threading.Event()  # the endpoint has read the stalled body's first part

    async def watched(scope, receive, send):  # the app, noting when the stalled body is read
        if scope["type"] == "http" and (b"x-test", b"stalled") in scope["headers"]:
            async def noted():
                message = await receive()
                reading.set()
                return message
            return await app(scope, noted, send)
        return await app(scope, receive, send)

    upload, fields = support_form(pictures)
    token = {TOKEN_HEADER: app.state.token}
    with serving(watched) as url, httpx.Client(base_url=url, headers=token,
                                               timeout=60) as client:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            part = ('--b\r\nContent-Disposition: form-data; name="labels"\r\n\r\n'
                    "black\r\n").encode()
            began = time.monotonic()
            stalled.sendall(
                f"POST /api/adapt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Test: stalled\r\n"
                f"{TOKEN_HEADER}: {app.state.token}\r\nContent-Length: 100000\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode() + part)
            assert reading.wait(30), "the server never read the stalled body"

            answer = client.post("api/adapt", files=upload, data=fields)  # not 409
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"classes": CLASSES, "examples": 6}
            assert client.get("api/progress").json()["stage"] == "adapted"
            # the stalled request is still waiting (unanswered) while that one ran
            assert select.select([stalled], [], [], 0)[0] == [], "answered before its deadline"

            received = b""
            while chunk := stalled.recv(65536):  # until the server closes the connection
                received += chunk
            waited = time.monotonic() - began
        finally:
            stalled.close()
        status, _, rest = received.partition(b"\r\n")
        assert status == b"HTTP/1.1 408 Request Timeout", received
        message = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
        assert message.startswith("the request body did not arrive within 3 s: nothing was "
                                  "done"), message
        assert waited >= seconds
        # it held nothing: the next job runs, and the one before stands
        answer = client.post("api/predict", files=files(pictures["query"][:1]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] == "black"


def test_a_file_name_of_5000_characters_is_not_blamed_on_the_file_count(run, pictures):  # noqa: F811
    """Issue 29, item 14: a part whose header is too long gets its own reason."""
    client = local_client(create_app(run))
    path = pictures[CLASSES[0]][0]
    response = client.post("/api/adapt", files=[("files", ("a" * 5000 + ".png",
                                                           path.read_bytes(), "image/png"))],
                           data={"labels": CLASSES[0]})
    message = one_line(response, 400, "file name")
    assert "500 files" not in message


@pytest.mark.parametrize("args,expected", [
    (["--body-timeout", "nan"], "finite"), (["--body-timeout", "inf"], "--body-timeout"),
    (["--body-timeout", "0"], "--body-timeout"), (["--allow-host", ""], "host name"),
    (["--allow-host", "evil.example/x"], "host name")])
def test_serve_options_out_of_range_are_refused_before_serving(args, expected):
    """click's usage error: its last line is the one ``Error:`` naming the option."""
    from click.testing import CliRunner

    from attnmeta.cli import main

    outcome = CliRunner().invoke(main, ["serve", "efficientnet-lite0", *args])
    assert outcome.exit_code == 2, outcome.output
    last = outcome.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and expected in last, last
