"""What keeps ``attnmeta serve`` to the person who started it, and its job lock to whole
requests: an ASGI middleware in front of every endpoint, and the one reader of a request's
body. Each refusal is one line, ``{"error": "..."}``, and nothing of the request runs.

- **Host** (DNS rebinding): a hostile page whose name is re-pointed at 127.0.0.1 talks to
  the server as "its own" origin, so a request is answered only when its ``Host`` is one
  of ``allowed_hosts`` (default the loopback names: 127.0.0.1, localhost, ::1; any port);
  else 403. A browser always sends the name the page was loaded from.
- **Origin or token** (cross-site requests): a POST (any method but GET / HEAD) is run
  only with an ``Origin`` equal to the server's own (``http://`` + its allowed Host: the
  page, whose browser sends Origin with every POST) or, with no Origin at all (curl,
  scripts), with the header ``X-Attnmeta-Token`` equal to this process's token (printed at
  start; ``ATTNMETA_SERVE_TOKEN`` sets it). A foreign Origin, a missing or wrong token: 403.
  Cross-origin reads are refused by the browser itself (no CORS headers are ever sent).
- **Guarded GETs** (``guarded_gets``: the model download): a GET is otherwise answered to
  anyone the Host check lets through, since a browser shows its answer only to the
  server's own page; a GET of one of these paths costs work (the model saved and zipped)
  and hands over the fitted model, so it is run only for a browser's own page or address
  bar (``Sec-Fetch-Site: same-origin`` or ``none``), the page's ``fetch`` (its header
  ``X-Attnmeta-Page``: a cross-origin page cannot add a header without a CORS preflight,
  which is refused; it covers browsers that send no ``Sec-Fetch-Site``, e.g. over plain
  http to a non-loopback address), the server's own ``Origin``, or the token. Another
  site's link, image or form: 403.
- **Body deadline** (slow clients): the whole body must arrive within ``body_seconds`` of
  the request's start, else 408 and the connection is closed. :func:`read_body` reads it
  all before an endpoint takes the job lock, so a stalled upload holds nothing.
- **Body size**: at most ``json_bytes`` for anything but a multipart upload (JSON, forms),
  at most ``upload_bytes`` for a multipart one; a declared ``Content-Length`` over it is
  refused before reading, a chunked body as soon as it passes it: 413.
- **JSON**: finite numbers only (no ``NaN``, ``Infinity``, ``1e400``) and at most
  :data:`MAX_JSON_DEPTH` levels deep: 400.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from typing import Any, Awaitable, Callable, Iterable, MutableMapping
from urllib.parse import urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request

from attnmeta.fewshot.inputs import MAX_IMAGE_BYTES, InputError
from attnmeta.fewshot.uploads import MAX_CSV_BYTES, MAX_SUPPORT_FILES

__all__ = ["RequestGuard", "read_body", "new_token", "host_name", "LOOPBACK_HOSTS",
           "TOKEN_HEADER", "PAGE_HEADER", "TOKEN_VARIABLE", "BODY_SECONDS", "JSON_BYTES",
           "UPLOAD_BYTES", "MAX_JSON_DEPTH"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "X-Attnmeta-Token"
PAGE_HEADER = "X-Attnmeta-Page"  # sent by the page's fetch of a guarded GET (any value)
OWN_FETCH_SITES = ("same-origin", "none")  # Sec-Fetch-Site: the page, or the address bar
TOKEN_VARIABLE = "ATTNMETA_SERVE_TOKEN"
BODY_SECONDS = 60.0
# the largest text request within the upload limits (500 sentences of 2000 characters,
# UTF-8) is about 3 MB: JSON bodies may be as large as a CSV upload
JSON_BYTES = MAX_CSV_BYTES
UPLOAD_BYTES = MAX_SUPPORT_FILES * (MAX_IMAGE_BYTES + 2**16)
MAX_JSON_DEPTH = 16  # the deepest body an endpoint reads: {"examples": [{"text": ...}]}
SAFE_METHODS = ("GET", "HEAD")


class BodyRefused(Exception):
    """The request body came too slowly (408) or is too large (413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_token() -> str:
    """``ATTNMETA_SERVE_TOKEN`` if set, else a new random token (this process's)."""
    return os.environ.get(TOKEN_VARIABLE) or secrets.token_urlsafe(24)


def host_name(host: str) -> str:
    """``host`` (a Host header, or an address to allow) without its port or brackets,
    lower case: ``[::1]:8000`` -> ``::1``, ``LocalHost:80`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host  # a bare name, or an IPv6 address without brackets


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port(host: str, scheme: str) -> int | None:
    """The port of a Host header, or the scheme's default."""
    try:
        return urlsplit(f"{scheme}://{host}").port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None


class RequestGuard:
    """The ASGI middleware in front of the app: Host, then Origin or token, then the body's
    deadline and size (see the module's docstring)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 allowed_hosts: Iterable[str], token: str, body_seconds: float = BODY_SECONDS,
                 json_bytes: int = JSON_BYTES, upload_bytes: int = UPLOAD_BYTES,
                 guarded_gets: Iterable[str] = ()) -> None:
        self.app = app
        self.guarded_gets = frozenset(guarded_gets)
        self.allowed = tuple(dict.fromkeys(host_name(host) for host in allowed_hosts))
        self.token = token.encode("utf-8")
        self.body_seconds, self.json_bytes, self.upload_bytes = (
            body_seconds, json_bytes, upload_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is None:
            limit = self.body_limit(headers)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                refusal = 413, self.too_large(int(declared), limit, whole=True)
        if refusal is not None:
            await _answer(send, *refusal)
            return

        received, complete = 0, False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: e.g. a wait for the client to disconnect
                return await receive()
            left = started + self.body_seconds - time.monotonic()
            try:
                with anyio.fail_after(max(left, 0.0)):
                    message = await receive()
            except TimeoutError:
                raise BodyRefused(408, f"the request body did not arrive within "
                                  f"{self.body_seconds:g} s: nothing was done (send the whole "
                                  "body at once; attnmeta serve --body-timeout SECONDS allows "
                                  "a slower network)") from None
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyRefused(413, self.too_large(received, limit, whole=False))
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        responded = False

        async def sent(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, sent)
        except BodyRefused as refused:
            if responded:
                raise
            await _answer(send, refused.status, str(refused))

    def refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        """403 and why, for a Host that is not allowed, or a POST (or a guarded GET) with
        a foreign Origin or without the token; None if the request may go on."""
        host = headers.get("host")
        # no Host at all: not a browser (a browser always sends one), so no rebinding
        if host is not None and host_name(host) not in self.allowed:
            return 403, (f"Host {host[:100]!r} is not allowed: this server answers "
                         f"{', '.join(map(_shown, self.allowed))} (another name may be a DNS "
                         f"rebinding attack; if you opened the page by this name, attnmeta "
                         f"serve --allow-host {_shown(host_name(host))[:100]} allows it)")
        if scope["method"] in SAFE_METHODS:
            if scope["path"] not in self.guarded_gets:
                return None
            site = headers.get("sec-fetch-site")
            if site in OWN_FETCH_SITES or (site is None and PAGE_HEADER in headers):
                return None
            if site is not None:
                return 403, (f"{scope['method']} {scope['path'][:100]} from another site "
                             f"refused (Sec-Fetch-Site {site[:30]!r}): use the server's own "
                             f"page, or a script with the {TOKEN_HEADER} header")
        own = f"{scope['scheme']}://{host}" if host else None
        origin = headers.get("origin")
        if origin is not None:
            if own is not None and self.same_origin(origin, host, scope["scheme"]):
                return None
            return 403, (f"cross-origin {scope['method']} refused: Origin {origin[:100]!r} is "
                         f"not this server ({own or 'no Host'}); use the server's own page, "
                         f"or a script that sends no Origin and the {TOKEN_HEADER} header")
        given = headers.get(TOKEN_HEADER)
        if given is None:
            return 403, (f"{scope['method']} {scope['path'][:100]} needs the token: send the "
                         f"header {TOKEN_HEADER} (printed when attnmeta serve started), or use "
                         "the server's page")
        if not secrets.compare_digest(given.encode("latin-1"), self.token):
            return 403, (f"wrong {TOKEN_HEADER}: expected the token attnmeta serve printed "
                         "when it started (a new one each start)")
        return None

    @staticmethod
    def same_origin(origin: str, host: str, scheme: str) -> bool:
        try:
            parts = urlsplit(origin)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return False
        return (parts.scheme == scheme and parts.path == "" and parts.hostname is not None
                and parts.hostname == host_name(host) and port == _port(host, scheme))

    def body_limit(self, headers: Headers) -> int:
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        return self.upload_bytes if multipart else self.json_bytes

    def too_large(self, size: int, limit: int, whole: bool) -> str:
        """Why a body of ``size`` bytes (``whole``: its declared length; else what had
        arrived when it passed ``limit``) is refused."""
        if limit == self.upload_bytes:
            return (f"the upload is over {limit / 2**30:.1f} GB: expected at most "
                    f"{MAX_SUPPORT_FILES} files of at most {MAX_IMAGE_BYTES // 2**20} MB")
        return (f"the request body is {size / 2**20:.1f} MB{'' if whole else ' or more'}: "
                f"expected at most {limit / 2**20:g} MB (JSON; images go as a multipart "
                "upload)")


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode("ascii"))]
    if status in (408, 413):  # the rest of the body is not read: the connection ends
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number: expected a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:30]} is out of range: expected a finite number")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists / objects more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1)
                         for child in (item.values() if isinstance(item, dict) else item))
    return False


async def read_body(request: Request, max_files: int) -> tuple[dict[str, Any],
                                                                dict[str, list]]:
    """The request's fields and file lists: JSON (fields only) or multipart, refusing more
    than ``max_files`` files while the upload is read (before any is decoded). The whole
    body is read here, within :class:`RequestGuard`'s deadline and size limits."""
    if request.headers.get("content-type", "").startswith("application/json"):
        raw = await request.body()
        too_deep = False
        try:
            body = json.loads(raw, parse_constant=_constant, parse_float=_finite)
        except RecursionError:  # json's own limit, near Python's recursion limit
            body, too_deep = None, True
        except ValueError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"the request body is not valid JSON ({message})") from None
        if too_deep or _depth_over(body, MAX_JSON_DEPTH):
            raise InputError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels "
                             "deep: expected {\"texts\": [...]} or {\"examples\": [...]}")
        if not isinstance(body, dict):
            raise InputError("the JSON body is not an object: expected {...}")
        return body, {}
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_files * (MAX_IMAGE_BYTES + 2**16):
        raise InputError(f"the upload is {int(declared) / 2**30:.1f} GB: expected at most "
                         f"{max_files} files of at most {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        form = await request.form(max_files=max_files, max_fields=max_files + 20)
    except HTTPException as error:  # Starlette's "Too many files. Maximum number ...", or
        detail = str(error.detail).rstrip(".")  # a malformed multipart body
        raise InputError(f"the upload was refused ({detail}): " + (
            f"expected at most {max_files} files in one request" if "Too many" in detail
            else "expected a well-formed multipart/form-data upload, each part's header "
            "(its field and file name) at most a few thousand characters")) from None
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    lists: dict[str, list] = {}
    for key, value in form.multi_items():
        lists.setdefault(key, []).append(value)
    return fields, lists
