"""``attnmeta serve MODEL_DIR|RUN_DIR|ENCODER``: a web page (and JSON endpoints) to adapt a trained
model to a person's own classes and classify queries, with each prediction's attention.

Why FastAPI + uvicorn, not Gradio: three small packages (FastAPI, uvicorn, python-multipart);
JSON endpoints that scripts call, documented here; one static page of ours, with stable
element ids a browser test drives; no network traffic (Gradio is a large install whose
apps send usage analytics to api.gradio.app unless ``GRADIO_ANALYTICS_ENABLED=False``).

Endpoints (errors: HTTP 400 ``{"error": "<one line>"}``; 409 while another job runs; 403,
408 and 413 from :mod:`attnmeta.fewshot.guards`; 404 and 405 the same one line):

- ``GET /`` (and ``HEAD /``): the page.
- ``GET /api/model``: ``{"modality": "image"|"text", "learner", "target", "fitted",
  "classes", "examples", "needs_classes" (a head's width, or null), "limits"}``.
- ``POST /api/adapt``: images: multipart, repeated ``files`` with a parallel repeated
  ``labels`` (class names); text: JSON ``{"examples": [{"text", "label"}], "steps"}`` or
  multipart ``file`` (a CSV with columns ``text,label``). Optional ``steps`` (inner steps
  of MAML / Reptile). Answers ``{"classes": [...], "examples": n}``.
- ``POST /api/predict``: images: multipart ``files``; text: JSON ``{"texts": [...]}``.
  Optional ``top_k`` (3), ``reject_below`` (a probability), ``explain`` (true: a PNG per
  query, base64). Answers ``{"predictions": [{"input", "label" (null if rejected),
  "probability", "top_k": [[class, p], ...], "explanation_png"?}]}``, the record
  ``attnmeta predict --json`` prints (:mod:`attnmeta.fewshot.records`).
- ``GET /api/progress``: the current or last job, ``{"stage", "done", "total", "running"}``
  (``total`` 0: no count, e.g. while the support set is embedded).
- ``GET /api/support``: the support set this server last adapted to, per class in the
  model's class order: ``{"classes": [{"name", "examples": [{"name", "thumbnail"}]}]}``;
  ``name`` an image's file name (or the sentence), ``thumbnail`` (images; null for text) the
  URL of ``GET /api/support/<adapt>/<index>``: a 128 px square JPEG of that stored upload,
  cut as the model reads it (its ``fit``), or 404 once another adapt has replaced it. Empty
  (``{"classes": []}``) until an adapt here succeeds (a saved model's own examples are not
  on this server). Nothing but the uploads of this server is ever read.

Adapt and predict run one at a time in a worker thread, so the page can poll progress
(printed in the terminal too); each reads its whole request (JSON parsed, files counted)
before it takes the job lock, so a slow or stalled upload holds nothing.

Who may ask (:mod:`attnmeta.fewshot.guards`, in front of every endpoint): only requests whose
``Host`` is one of ``allowed_hosts`` (the loopback names; DNS rebinding), and POSTs only from
the page itself (its ``Origin``) or from a script that sends no Origin and the header
``X-Attnmeta-Token`` with this process's token (cross-site requests); the body must arrive
within ``body_seconds`` and stay within its size.

The file is over 300 lines because it is one app: its endpoints share the model, the upload
store and the job lock made in :func:`create_app`, and each endpoint is short.
"""

from __future__ import annotations

import base64
import io
import socket
import sys
import threading
from contextlib import asynccontextmanager, contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from attnmeta.fewshot import uploads
from attnmeta.fewshot.guards import (BODY_SECONDS, LOOPBACK_HOSTS, TOKEN_HEADER, RequestGuard,
                                     host_name, new_token, read_body)
from attnmeta.fewshot.inputs import MAX_IMAGE_BYTES, InputError
from attnmeta.fewshot.source import open_classifier
from attnmeta.fewshot.records import prediction_records
from attnmeta.tasks.image_folder import IMAGE_SUFFIXES

__all__ = ["create_app", "run_server", "bind", "hosts_to_allow"]

THUMBNAIL_PIXELS = 128  # a square's side: sharp at the page's 64 px on a 2x screen


class Busy(Exception):
    """Another adapt or predict is running."""


class JobProgress:
    """The current long job's stage and count, for ``GET /api/progress`` and the terminal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: dict[str, Any] = {"stage": "idle", "done": 0, "total": 0, "running": False}

    def start(self, stage: str, total: int = 0) -> None:
        self.update(0, total, stage, running=True)

    def update(self, done: int, total: int, stage: str | None = None,
               running: bool = True) -> None:
        with self._lock:
            self.state = {"stage": stage or self.state["stage"], "done": done, "total": total,
                          "running": running}
        count = f" {done}/{total}" if total else ""
        print(f"attnmeta serve: {self.state['stage']}{count}", file=sys.stderr, flush=True)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.state)


def create_app(target: str | Path, keep: Path | None = None, data_root: str | None = None,
               *, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS, token: str | None = None,
               body_seconds: float = BODY_SECONDS) -> FastAPI:
    """The app serving ``target`` (a saved model folder, a run folder or a built-in encoder:
    :func:`attnmeta.fewshot.source.open_classifier`); uploads go to a temporary folder
    removed at shutdown, or into ``keep``. It answers requests whose Host is one of
    ``allowed_hosts`` (names or addresses, any port); scripts' POSTs carry ``token``
    (None: ``ATTNMETA_SERVE_TOKEN`` or a new random one; ``app.state.token``); a request
    body must arrive within ``body_seconds``."""
    model = open_classifier(target, data_root)
    modality = model.preprocessing.modality
    store = uploads.UploadStore(keep)
    progress = JobProgress()
    job_lock = threading.Lock()
    # (adapt number, [(stored path or sentence, class)]): replaced whole after each adapt
    fitted_support: tuple[int, list[tuple[Any, str]]] = (0, [])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    # no /docs: FastAPI's API pages load their scripts from a CDN (this module documents it)
    app = FastAPI(title="attnmeta serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.uploads, app.state.model, app.state.progress = store.root, model, progress
    app.state.token = token or new_token()
    app.state.allowed_hosts = tuple(allowed_hosts)
    app.add_middleware(RequestGuard, allowed_hosts=app.state.allowed_hosts,
                       token=app.state.token, body_seconds=body_seconds)

    @app.exception_handler(InputError)
    @app.exception_handler(ValueError)  # the runs layer's (CheckpointError, ConfigError)
    async def one_line_error(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error).splitlines()[0]}, status_code=400)

    @app.exception_handler(HTTPException)  # 404, 405: the same one line as every error
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{str(error.detail).lower()}: {request.method} "
                             f"{request.url.path[:100]} (the endpoints: GET /, /api/model, "
                             "/api/progress, /api/support; POST /api/adapt, /api/predict)"},
                            status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Busy)
    async def busy(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=409)

    @contextmanager
    def exclusive() -> Iterator[None]:
        if not job_lock.acquire(blocking=False):
            raise Busy(f"busy: {progress.snapshot()['stage']} is still running; try again "
                       "when it ends (GET /api/progress)")
        try:
            yield
        finally:
            job_lock.release()

    def describe() -> dict[str, Any]:
        return {"modality": modality, "learner": model.learner.display_name,
                "target": str(target), "fitted": bool(model.class_names),
                "classes": list(model.class_names),
                "examples": len(model.support.labels) if model.support else 0,
                "needs_classes": model.config.data.train.n_way if model.learner.needs_head
                else None,
                "limits": {"support_files": uploads.MAX_SUPPORT_FILES,
                           "query_files": uploads.MAX_QUERY_FILES,
                           "file_bytes": MAX_IMAGE_BYTES, "suffixes": sorted(IMAGE_SUFFIXES),
                           "text_chars": uploads.MAX_TEXT_CHARS}}

    def fit(pairs: list[tuple[Any, str]], steps: int | None) -> None:
        def reading(done: int, total: int) -> None:
            progress.update(done, total, "reading support images")
            if done == total:  # what is left is the learner's own fitting (no count)
                progress.update(0, 0, f"fitting {model.learner.display_name} to the support set")

        stepping = (lambda done, total:  # MAML / Reptile count their inner steps
                    progress.update(done, total, f"{model.learner.display_name}: inner steps"))
        progress.start(f"adapting to {len(pairs)} examples")
        fitted = False
        try:
            model.fit(pairs, steps=steps, progress=reading, step_progress=stepping)
            fitted = True
        finally:
            progress.update(len(pairs), len(pairs), "adapted" if fitted else "adapt failed",
                            running=False)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(files("attnmeta.fewshot").joinpath("static/index.html").read_text(
            encoding="utf-8"))

    @app.get("/api/model")
    def model_info() -> dict[str, Any]:
        return describe()

    @app.get("/api/progress")
    def job_progress() -> dict[str, Any]:
        return progress.snapshot()

    @app.post("/api/adapt")
    async def adapt(request: Request) -> dict[str, Any]:
        nonlocal fitted_support
        fields, lists = await read_body(request, uploads.MAX_SUPPORT_FILES)  # before the lock
        with exclusive():
            folder = store.new_folder("adapt")
            if modality == "image":
                pairs = uploads.image_support(lists.get("files", []), lists.get("labels", []),
                                              folder)
            else:
                pairs = uploads.text_support(fields.get("examples"), lists.get("file", []),
                                             folder)
            steps = uploads.number(fields.get("steps"), int, "steps")
            await run_in_threadpool(fit, pairs, steps)
            fitted_support = (fitted_support[0] + 1, list(pairs))
        return {"classes": list(model.class_names), "examples": len(pairs)}

    @app.get("/api/support")
    def support_set() -> dict[str, Any]:
        number, pairs = fitted_support
        grouped: dict[str, list[dict[str, Any]]] = {name: [] for name in model.class_names}
        for index, (item, label) in enumerate(pairs):
            grouped.setdefault(label, []).append(  # a stored upload is "0003-<its name>"
                {"name": item.name.split("-", 1)[-1],
                 "thumbnail": f"/api/support/{number}/{index}"}
                if modality == "image" else {"name": item, "thumbnail": None})
        return {"classes": [{"name": name, "examples": examples}
                            for name, examples in grouped.items() if examples]}

    @app.get("/api/support/{number}/{index}")
    def support_thumbnail(number: str, index: str) -> Response:
        current, pairs = fitted_support
        if modality != "image":
            return JSONResponse({"error": "no support images: this model reads sentences "
                                 "(GET /api/support lists them)"}, status_code=404)
        if (number != str(current) or not index.isascii() or not index.isdigit()
                or int(index) >= len(pairs)):
            return JSONResponse({"error": f"no support image {index:.20} of adapt {number:.20}: "
                                 f"this server holds adapt {current}'s {len(pairs)} (GET "
                                 "/api/support)"}, status_code=404)
        from PIL import Image

        from attnmeta.tasks.image_folder import load_image

        pixels = load_image(pairs[int(index)][0], THUMBNAIL_PIXELS,
                            model.preprocessing.channels, model.preprocessing.fit)  # [C, S, S]
        square = (pixels * 255).round().astype("uint8").transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(square[:, :, 0] if square.shape[2] == 1 else square).save(
            buffer, "JPEG", quality=90)
        # no-store: adapt numbers start again at 1 when the server does
        return Response(buffer.getvalue(), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    def predict_job(batch: Any, singles: list[Path], names: list[str], top_k: int | None,
                    reject_below: float | None) -> list[dict[str, Any]]:
        """Records for the queries ``batch`` (one model call); with an attention picture
        for each of ``singles`` (the same queries one by one) where it is not empty."""
        progress.start(f"predicting {len(names)} quer{'y' if len(names) == 1 else 'ies'}",
                       len(names))
        done_ok = False
        try:
            logits, _ = model.logits(batch, progress=lambda done, total: progress.update(
                done, total, "reading queries"))
            records = prediction_records(model, logits, names, top_k, reject_below)
            if singles:
                from attnmeta.viz.explain import explanation_png

                for done, (query, record) in enumerate(zip(singles, records), 1):
                    explanation = model.explain(query)
                    explanation.query_name = record["input"]
                    record["explanation_png"] = base64.b64encode(
                        explanation_png(explanation)).decode("ascii")
                    progress.update(done, len(names), "drawing attention pictures")
            done_ok = True
            return records
        finally:
            progress.update(len(names), len(names), "predicted" if done_ok else "predict failed",
                            running=False)

    @app.post("/api/predict")
    async def predict(request: Request) -> dict[str, Any]:
        fields, lists = await read_body(request, uploads.MAX_QUERY_FILES)  # before the lock
        with exclusive():
            if not model.class_names:
                raise InputError("no classes yet: adapt first (the Adapt button, or POST "
                                 "/api/adapt with a support set)")
            folder = store.new_folder("predict")
            explain = uploads.flag(fields.get("explain", False))
            if modality == "image":
                names, batch = uploads.image_queries(lists.get("files", []), folder)
                singles = batch if explain else []
            else:
                names, batch, singles = uploads.text_queries(fields.get("texts"), folder,
                                                             explain)
            top_k = uploads.number(fields.get("top_k"), int, "top_k")  # None: min(3, classes)
            reject_below = uploads.number(fields.get("reject_below"), float, "reject_below")
            records = await run_in_threadpool(predict_job, batch, singles, names, top_k,
                                              reject_below)
        return {"predictions": records}

    return app


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: a free one), or one line saying
    why not (a port in use, a host that is not this machine)."""
    sock = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        if sock is not None:
            sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error} "
                         "(another --port, or a --host of this machine)") from None
    return sock


EVERY_ADDRESS = ("", "0.0.0.0", "::")


def hosts_to_allow(host: str, allow_hosts: Iterable[str] = ()) -> list[str]:
    """The Host names a server listening on ``host`` answers: the loopback names, ``host``
    itself (an address typed in the URL is never a rebound name; 0.0.0.0 or :: included)
    and ``allow_hosts`` (e.g. this machine's name on the network)."""
    names = (host_name(name) for name in [*LOOPBACK_HOSTS, host, *allow_hosts])
    return list(dict.fromkeys(name for name in names if name))


def run_server(target: str | Path, host: str = "127.0.0.1", port: int = 8000,
               keep: Path | None = None, data_root: str | None = None,
               allow_hosts: Iterable[str] = (), body_seconds: float = BODY_SECONDS) -> None:
    """Serve ``target`` until Ctrl+C; prints the URL and the scripts' token. Binds to this
    machine only unless ``host`` says otherwise (e.g. 0.0.0.0: every network it is on).
    Requests are answered for the Host names of :func:`hosts_to_allow`."""
    import uvicorn

    sock = bind(host, port)  # first: a port in use fails before the model loads
    allowed = hosts_to_allow(host, allow_hosts)
    try:
        app = create_app(target, keep, data_root, allowed_hosts=allowed,
                         body_seconds=body_seconds)
    except BaseException:
        sock.close()
        raise
    shown_host = f"[{host}]" if ":" in host else host
    print(f"attnmeta serve: {target} ({app.state.model.learner.display_name}, "
          f"{app.state.model.preprocessing.modality}) at "
          f"http://{shown_host}:{sock.getsockname()[1]}/  (Ctrl+C stops; uploads "
          f"{'kept in ' + str(keep) if keep else 'are removed then'})", flush=True)
    every = host_name(host) in EVERY_ADDRESS
    print(f"attnmeta serve: answers Host {', '.join(allowed)} only"
          f"{' (add a name: --allow-host NAME)' if every else ''}; scripts POST with the "
          f"header '{TOKEN_HEADER}: {app.state.token}' (the page needs none)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
