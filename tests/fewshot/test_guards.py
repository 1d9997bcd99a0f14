"""attnmeta.fewshot.guards in front of a two-line Starlette app (the same checks through
the whole server are in test_serve_security.py)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from attnmeta.fewshot import InputError
from attnmeta.fewshot.guards import (MAX_JSON_DEPTH, PAGE_HEADER, TOKEN_HEADER, TOKEN_VARIABLE,
                                     RequestGuard, host_name, new_token, read_body)

TOKEN = "s3cret"


async def _echo(request):
    try:
        fields, lists = await read_body(request, max_files=2)
    except InputError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"fields": fields, "files": sorted(lists)})


async def _page(request):
    return JSONResponse({"ok": True})


def guarded(**options) -> TestClient:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"]),
                            Route("/", _page), Route("/download", _page)])
    guard = RequestGuard(app, allowed_hosts=["127.0.0.1", "localhost", "::1"], token=TOKEN,
                         guarded_gets=["/download"], **options)
    return TestClient(guard, base_url="http://127.0.0.1:8000")


@pytest.mark.parametrize("host,name", [("[::1]:8000", "::1"), ("LocalHost:80", "localhost"),
                                       ("127.0.0.1", "127.0.0.1"), ("fd00::5", "fd00::5"),
                                       (" Box.LAN:1 ", "box.lan")])
def test_host_name_drops_port_brackets_and_case(host, name):
    assert host_name(host) == name


def test_new_token_is_the_variable_or_a_fresh_random_one(monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, "fixed")
    assert new_token() == "fixed"
    monkeypatch.delenv(TOKEN_VARIABLE)
    first, second = new_token(), new_token()
    assert first != second and len(first) >= 24


def test_a_foreign_host_is_refused_and_loopback_names_are_answered():
    client = guarded()
    refused = client.get("/", headers={"host": "evil.example"})
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("Host 'evil.example' is not allowed")
    assert "--allow-host evil.example" in refused.json()["error"]
    for host in ("127.0.0.1:8000", "localhost", "[::1]:9"):
        assert client.get("/", headers={"host": host}).json() == {"ok": True}


def test_a_post_needs_the_same_origin_or_the_token():
    client = guarded()
    own = {"origin": "http://127.0.0.1:8000"}
    assert client.post("/echo", json={"a": 1}, headers=own).json()["fields"] == {"a": 1}
    for origin in ("http://evil.example", "http://127.0.0.1:8001", "https://127.0.0.1:8000",
                   "http://127.0.0.1:8000/path", "null"):
        answer = client.post("/echo", json={}, headers={"origin": origin})
        assert answer.status_code == 403 and "cross-origin POST refused" in answer.json()["error"]
    assert client.post("/echo", json={}).status_code == 403  # no Origin, no token
    wrong = client.post("/echo", json={}, headers={TOKEN_HEADER: "guess"})
    assert wrong.status_code == 403 and wrong.json()["error"].startswith(f"wrong {TOKEN_HEADER}")
    assert client.post("/echo", json={"b": 2}, headers={TOKEN_HEADER: TOKEN}).status_code == 200


def test_same_origin_compares_scheme_host_and_default_port():
    assert RequestGuard.same_origin("http://localhost", "localhost:80", "http")
    assert RequestGuard.same_origin("http://[::1]:8000", "[::1]:8000", "http")
    assert not RequestGuard.same_origin("http://localhost:81", "localhost", "http")
    assert not RequestGuard.same_origin("http://local host", "localhost", "http")


def test_a_guarded_get_needs_the_own_site_the_page_header_or_the_token():
    client = guarded()
    assert client.get("/").status_code == 200  # an unguarded GET: anyone the Host lets in
    for headers in ({"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"},
                    {PAGE_HEADER: "1"}, {TOKEN_HEADER: TOKEN}):
        assert client.get("/download", headers=headers).status_code == 200, headers
    cross = client.get("/download", headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403 and "from another site refused" in cross.json()["error"]
    assert client.get("/download").status_code == 403


def test_a_declared_body_over_the_limit_is_413_before_it_is_read():
    client = guarded(json_bytes=100)
    answer = client.post("/echo", content=b"{" + b" " * 200 + b"}",
                         headers={TOKEN_HEADER: TOKEN, "content-type": "application/json"})
    assert answer.status_code == 413 and answer.headers["connection"] == "close"
    assert "expected at most 9.53674e-05 MB" in answer.json()["error"]


def test_read_body_refuses_non_finite_deep_or_non_object_json():
    client = guarded()
    post = lambda text: client.post(  # noqa: E731
        "/echo", content=text, headers={TOKEN_HEADER: TOKEN, "content-type": "application/json"})
    assert post('{"x": 1.5, "y": [1, 2]}').json()["fields"] == {"x": 1.5, "y": [1, 2]}
    assert "NaN is not a JSON number" in post('{"x": NaN}').json()["error"]
    assert "1e400 is out of range" in post('{"x": 1e400}').json()["error"]
    assert "not an object" in post("[1]").json()["error"]
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert post('{"a": %s}' % deep[1:-1]).status_code == 200  # exactly the limit
    assert f"more than {MAX_JSON_DEPTH} levels" in post('{"a": %s}' % deep).json()["error"]
    assert "not valid JSON" in post("{").json()["error"]


def test_read_body_reads_a_multipart_form_and_counts_its_files():
    client = guarded()
    answer = client.post("/echo", data={"top_k": "2"}, files=[("support", ("a.png", b"x"))],
                         headers={TOKEN_HEADER: TOKEN})
    assert answer.json() == {"fields": {"top_k": "2"}, "files": ["support", "top_k"]}
    many = client.post("/echo", files=[("support", (f"{i}.png", b"x")) for i in range(3)],
                       headers={TOKEN_HEADER: TOKEN})
    assert many.status_code == 400 and "expected at most 2 files" in many.json()["error"]
