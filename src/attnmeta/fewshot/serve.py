"""``attnmeta serve MODEL_DIR|RUN_DIR|ENCODER``: a web page (and JSON endpoints) to adapt a trained
model to a person's own classes and classify queries, with each prediction's attention.

Why FastAPI + uvicorn, not Gradio: three small packages (FastAPI, uvicorn, python-multipart);
JSON endpoints that scripts call, documented here; one static page of ours, with stable
element ids a browser test drives; no network traffic (Gradio is a large install whose
apps send usage analytics to api.gradio.app unless ``GRADIO_ANALYTICS_ENABLED=False``).

Endpoints (errors: HTTP 400 ``{"error": "<one line>"}``; 409 for an adapt while another
adapt runs; 503 (``Retry-After: 1``) for a prediction while :data:`PREDICT_SLOTS` run and
:data:`PREDICT_QUEUE` wait; 403, 408 and 413 from :mod:`attnmeta.fewshot.guards`; 404 and
405 the same one line):

- ``GET /`` (and ``HEAD /``): the page.
- ``GET /api/model``: ``{"modality": "image"|"text", "learner", "target", "fitted",
  "classes", "examples", "needs_classes" (a head's width, or null), "limits"}``.
- ``POST /api/adapt``: images: multipart, repeated ``files`` with a parallel repeated
  ``labels`` (class names); text: JSON ``{"examples": [{"text", "label"}], "steps"}`` or
  multipart ``file`` (a CSV with columns ``text,label``). Optional ``steps`` (inner steps
  of MAML / Reptile, 0 to :data:`attnmeta.fewshot.fields.MAX_STEPS`). Answers
  ``{"classes": [...], "examples": n}``.
- ``POST /api/predict``: images: multipart ``files``; text: JSON ``{"texts": [...]}``.
  Optional ``top_k`` (3; 1 to the number of classes), ``reject_below`` (a probability),
  ``explain`` (true: a PNG per query, base64). Answers ``{"predictions": [{"input",
  "label" (null if rejected), "probability", "top_k": [[class, p], ...],
  "explanation_png"?}]}``, the record ``attnmeta predict --json`` prints
  (:mod:`attnmeta.fewshot.records`).
  Every field is read by :mod:`attnmeta.fewshot.fields`: a value that is not exactly of
  its type (``top_k`` 1.9, ``true`` or ``"3"`` in JSON; ``explain=maybe``), or a field the
  endpoint does not read, is a 400 line naming the field.
- ``GET /api/model/download``: the fitted model as a zip of the folder
  :meth:`~attnmeta.fewshot.classifier.FewShotClassifier.save` writes (``attnmeta-model/``
  inside: ``attnmeta predict attnmeta-model ...`` reads it); 409 until something is
  fitted. A guarded GET (:mod:`attnmeta.fewshot.guards`): only the page, the address bar
  or a script with the token.
- ``GET /api/progress``: the newest running job, else the last one, ``{"stage", "done",
  "total", "running"}`` (``total`` 0: no count, e.g. while the support set is embedded),
  with ``"eta_seconds"`` (the time left at the rate so far) while a counted stage runs.
- ``GET /api/support``: the support set this server last adapted to, per class in the
  model's class order: ``{"classes": [{"name", "examples": [{"name", "thumbnail"}]}]}``;
  ``name`` an image's file name (or the sentence), ``thumbnail`` (images; null for text) the
  URL of ``GET /api/support/<adapt>/<index>``: a 128 px square JPEG of that stored upload,
  cut as the model reads it (its ``fit``), or 404 once another adapt has replaced it. Empty
  (``{"classes": []}``) until an adapt here succeeds (a saved model's own examples are not
  on this server). Nothing but the uploads of this server is ever read.

Each request is read whole (JSON parsed, files counted) before anything else, so a slow or
stalled upload holds nothing; then its files are checked (count, bytes, type, and at most
:data:`attnmeta.fewshot.uploads.MAX_REQUEST_PIXELS` decoded pixels, from the headers),
stored, and the work runs in a worker thread, so the page can poll progress (printed in the
terminal too, with the time left, at least every :data:`PRINT_SECONDS` for long work).
Predictions only read the fitted model: up to :data:`PREDICT_SLOTS` run at once and more
wait their turn (no 409), each from one fitted state, whole: an adapt fits beside them and
swaps the new state in with one assignment
(:attr:`attnmeta.fewshot.classifier.FewShotClassifier.fitted`), so every answer is the
old class set's or the new one's, never a mix. Adapts run one at a time. A learner that
adapts by gradient steps (MAML, Reptile) runs every forward pass through
``torch.func.functional_call``, which puts the given weights into the one shared module
while it runs: over it, predictions and adapts run one at a time.
A request's uploads are removed when it ends, except the last successful adapt's (its
thumbnails); with ``--keep`` every request's uploads stay.

Who may ask (:mod:`attnmeta.fewshot.guards`, in front of every endpoint): only requests whose
``Host`` is one of ``allowed_hosts`` (the loopback names; DNS rebinding), and POSTs only from
the page itself (its ``Origin``) or from a script that sends no Origin and the header
``X-Attnmeta-Token`` with this process's token (cross-site requests), and the same for the
model download, which a browser's own page or address bar may also fetch; the body must
arrive within ``body_seconds`` and stay within its size.
"""

from __future__ import annotations

import base64
import io
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import asynccontextmanager, contextmanager, nullcontext
from importlib.resources import files
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, NamedTuple, TextIO

from attnmeta.errors import AttnmetaError, MissingDependencyError

try:  # the optional extra
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
except ImportError as error:
    raise MissingDependencyError(f"serve needs {error.name}: expected pip install "
                                 "'attnmeta[serve]'") from error

from attnmeta.fewshot import uploads
from attnmeta.fewshot.fields import MAX_STEPS, RequestFields
from attnmeta.fewshot.guards import (BODY_SECONDS, LOOPBACK_HOSTS, TOKEN_HEADER, RequestGuard,
                                     host_name, new_token, read_body)
from attnmeta.fewshot.inputs import (MAX_IMAGE_BYTES, InputError, duration_words, eta_seconds,
                                     progress_words)
from attnmeta.fewshot.source import open_classifier
from attnmeta.fewshot.records import prediction_records
from attnmeta.tasks.image_folder import IMAGE_SUFFIXES

__all__ = ["create_app", "run_server", "bind", "hosts_to_allow", "JobProgress",
           "PREDICT_SLOTS", "PREDICT_QUEUE", "PRINT_SECONDS", "DOWNLOAD_PATH", "DOWNLOAD_NAME"]

THUMBNAIL_PIXELS = 128  # a square's side: sharp at the page's 64 px on a 2x screen
# Predictions running at once (each forward pass uses torch's intra-op threads, so more
# would only share the cores), and predictions waiting for one of them beyond which a new
# one is answered 503: every waiting prediction holds a thread of the server's pool (40).
PREDICT_SLOTS = 2
PREDICT_QUEUE = 16
PRINT_SECONDS = 2.0  # a running job's line in the terminal, at least this often
DOWNLOAD_PATH = "/api/model/download"
DOWNLOAD_NAME = "attnmeta-model"  # the zip's name and the one folder inside it
ADAPT_FIELDS = ("files", "labels", "file", "examples", "steps")
PREDICT_FIELDS = ("files", "texts", "top_k", "reject_below", "explain")


class Busy(Exception):
    """Another adapt is running, or nothing is fitted to download (409)."""


class Overloaded(Exception):
    """Too many predictions are waiting (503)."""


class Job:
    """One adapt or predict as :class:`JobProgress` shows it: its stage, count and times."""

    def __init__(self, board: "JobProgress", number: int, stage: str, total: int) -> None:
        self.board, self.number = board, number
        self.stage, self.done, self.total, self.running = stage, 0, total, True
        self.started = self.stage_started = self.printed = board.clock()

    def update(self, done: int, total: int, stage: str | None = None) -> None:
        """The count (and, if given, the stage) now; the terminal hears of it at most
        every :data:`PRINT_SECONDS` (:class:`JobProgress`)."""
        with self.board.lock:
            if stage is not None and stage != self.stage:
                self.stage, self.stage_started = stage, self.board.clock()
            self.done, self.total = done, total

    def end(self, stage: str, count: int) -> None:
        """Finished (``stage``: e.g. "adapted" or "adapt failed"), ``count`` of ``count``;
        one line in the terminal with the time it took."""
        with self.board.lock:
            self.stage, self.done, self.total, self.running = stage, count, count, False
            self.board.finished(self)
            seconds = self.board.clock() - self.started
        self.board.say(f"{stage} {count}/{count} ({seconds:.2f} s)")

    def state(self, now: float) -> dict[str, Any]:
        state = {"stage": self.stage, "done": self.done, "total": self.total,
                 "running": self.running}
        left = eta_seconds(self.done, self.total, now - self.stage_started)
        if self.running and left is not None:
            state["eta_seconds"] = round(left, 1)
        return state

    def line(self, now: float) -> str:
        if self.total:
            return f"{self.stage} {progress_words(self.done, self.total, now - self.stage_started)}"
        return f"{self.stage}, {duration_words(now - self.started)} so far"


class JobProgress:
    """The jobs running (adapts and predictions may run at once) for ``GET /api/progress``
    and the terminal. The API shows the newest running job (or the last finished one):
    ``{"stage", "done", "total", "running"}``, and ``eta_seconds`` while a counted stage
    runs. The terminal gets a line when a job ends (with its time) and, while one runs,
    its stage, count and time left at least every ``every`` seconds (a thread ticks while
    any job runs), so long work is never silent and short work is one line."""

    def __init__(self, out: TextIO | None = None, every: float = PRINT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.every, self.clock = out, every, clock
        self.lock = threading.Lock()
        self.jobs: list[Job] = []  # running
        self.last: dict[str, Any] = {"stage": "idle", "done": 0, "total": 0,
                                     "running": False}
        self.count = 0
        self.ticker: threading.Thread | None = None

    def start(self, stage: str, total: int = 0) -> Job:
        """A new running job at ``stage``, ``total`` its count (0: none)."""
        with self.lock:
            self.count += 1
            job = Job(self, self.count, stage, total)
            self.jobs.append(job)
            if self.ticker is None:
                self.ticker = threading.Thread(target=self.tick, daemon=True,
                                               name="attnmeta-serve-progress")
                self.ticker.start()
        return job

    def finished(self, job: Job) -> None:  # called with the lock held
        self.jobs = [other for other in self.jobs if other is not job]
        self.last = job.state(self.clock())

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            if self.jobs:
                return max(self.jobs, key=lambda job: job.number).state(self.clock())
            return dict(self.last)

    def say(self, text: str) -> None:
        print(f"attnmeta serve: {text}", file=self.out or sys.stderr, flush=True)

    def tick(self) -> None:
        """Every job's line once it has been quiet for ``every`` s; ends with the jobs."""
        while True:
            time.sleep(min(0.25, self.every))
            with self.lock:
                if not self.jobs:
                    self.ticker = None
                    return
                now = self.clock()
                due = [job for job in self.jobs if now - job.printed >= self.every]
                lines = [job.line(now) for job in due]
                for job in due:
                    job.printed = now
            for line in lines:
                self.say(line)


class SupportSet(NamedTuple):
    """The last successful adapt here: its number, ``(stored path or sentence, class)``
    pairs, the folder of its uploads (kept while it is the last) and the thumbnails made
    of them so far. Replaced whole after each adapt."""

    number: int
    pairs: list[tuple[Any, str]]
    folder: Path | None
    thumbnails: dict[int, bytes]


def create_app(target: str | Path, keep: Path | None = None,
               *, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS, token: str | None = None,
               body_seconds: float = BODY_SECONDS) -> FastAPI:
    """The app serving ``target`` (a saved model folder, a run folder or a built-in encoder:
    :func:`attnmeta.fewshot.source.open_classifier`); uploads go to a temporary folder
    removed at shutdown, or into ``keep``. It answers requests whose Host is one of
    ``allowed_hosts`` (names or addresses, any port); scripts' POSTs carry ``token``
    (None: ``ATTNMETA_SERVE_TOKEN`` or a new random one; ``app.state.token``); a request
    body must arrive within ``body_seconds``."""
    model = open_classifier(target)
    modality = model.preprocessing.modality
    image_size = model.preprocessing.image_size if modality == "image" else None
    store = uploads.UploadStore(keep)
    progress = JobProgress()
    adapt_lock = threading.Lock()
    # A learner that adapts by gradient steps (MAML, Reptile) runs every forward pass
    # through torch.func.functional_call, which puts the given weights into the shared
    # module while it runs: its predictions and adapts take the one slot in turn. Others
    # only read the module: PREDICT_SLOTS predictions at once, adapts beside them.
    shared_weights = bool(model.learner.adapts_by_gradient)
    slots = 1 if shared_weights else PREDICT_SLOTS
    forward_slots = threading.BoundedSemaphore(slots)
    pending_lock, pending = threading.Lock(), [0]
    adapting: list[Job] = []  # the running adapt's job, for a refused adapt's message
    fitted_support = SupportSet(0, [], None, {})

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
    app.state.store, app.state.predict_slots = store, slots
    app.state.token = token or new_token()
    app.state.allowed_hosts = tuple(allowed_hosts)
    app.add_middleware(RequestGuard, allowed_hosts=app.state.allowed_hosts,
                       token=app.state.token, body_seconds=body_seconds,
                       guarded_gets=(DOWNLOAD_PATH,))

    # what the user can fix: 400 with its one line; anything else is a bug, a 500 whose
    # traceback the server logs
    @app.exception_handler(AttnmetaError)
    async def one_line_error(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error).splitlines()[0]}, status_code=400)

    @app.exception_handler(HTTPException)  # 404, 405: the same one line as every error
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{str(error.detail).lower()}: {request.method} "
                             f"{request.url.path[:100]} (the endpoints: GET /, /api/model, "
                             "/api/model/download, /api/progress, /api/support; POST "
                             "/api/adapt, /api/predict)"},
                            status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Busy)
    async def busy(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=409)

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503,
                            headers={"Retry-After": "1"})

    @contextmanager
    def one_adapt() -> Iterator[None]:
        if not adapt_lock.acquire(blocking=False):
            stage = adapting[-1].stage if adapting else "another adapt"
            raise Busy(f"busy: {stage} is still running; try again when it ends (GET "
                       "/api/progress)")
        try:
            yield
        finally:
            adapt_lock.release()

    @contextmanager
    def admitted() -> Iterator[None]:
        """A prediction's place: running or waiting, at most ``slots + PREDICT_QUEUE``."""
        with pending_lock:
            if pending[0] >= slots + PREDICT_QUEUE:
                raise Overloaded(f"busy: {pending[0]} predictions are running or waiting "
                                 f"(at most {slots + PREDICT_QUEUE}); try again in a moment")
            pending[0] += 1
        try:
            yield
        finally:
            with pending_lock:
                pending[0] -= 1

    def describe() -> dict[str, Any]:
        fitted = model.fitted  # one read: an adapt swaps it whole
        return {"modality": modality, "learner": model.learner.display_name,
                "target": str(target), "fitted": bool(fitted.class_names),
                "classes": list(fitted.class_names),
                "examples": len(fitted.support.labels) if fitted.support else 0,
                "needs_classes": model.config.data.train.n_way if model.learner.needs_head
                else None,
                "limits": {"support_files": uploads.MAX_SUPPORT_FILES,
                           "query_files": uploads.MAX_QUERY_FILES,
                           "file_bytes": MAX_IMAGE_BYTES, "suffixes": sorted(IMAGE_SUFFIXES),
                           "request_pixels": uploads.MAX_REQUEST_PIXELS,
                           "text_chars": uploads.MAX_TEXT_CHARS}}

    def fit(pairs: list[tuple[Any, str]], steps: int | None) -> None:
        job = progress.start(f"adapting to {len(pairs)} examples")
        adapting[:] = [job]

        def reading(done: int, total: int) -> None:
            job.update(done, total, "reading support images")
            if done == total:  # what is left is the learner's own fitting (no count)
                job.update(0, 0, f"fitting {model.learner.display_name} to the support set")

        stepping = (lambda done, total:  # MAML / Reptile count their inner steps
                    job.update(done, total, f"{model.learner.display_name}: inner steps"))
        fitted = False
        try:
            model.fit(pairs, steps=steps, progress=reading, step_progress=stepping)
            fitted = True
        finally:
            job.end("adapted" if fitted else "adapt failed", len(pairs))

    def adapt_job(body: RequestFields) -> dict[str, Any]:
        """Check and store the support set, fit, and make it the one this server shows;
        the uploads of the adapt it replaces (or of this one, if it fails) go."""
        nonlocal fitted_support
        fields, lists = body.values, body.lists
        steps = body.whole("steps", 0, MAX_STEPS, "inner steps")
        folder, kept = store.new_folder("adapt"), False
        try:
            if modality == "image":
                pairs = uploads.image_support(lists.get("files", []), lists.get("labels", []),
                                              folder, image_size)
            else:
                pairs = uploads.text_support(fields.get("examples"), lists.get("file", []),
                                             folder)
            with forward_slots if shared_weights else nullcontext():
                fit(pairs, steps)
            classes = list(model.fitted.class_names)  # this fit's: adapts run one at a time
            replaced = fitted_support
            fitted_support = SupportSet(replaced.number + 1, list(pairs), folder, {})
            kept = True
        finally:
            if not kept:
                store.discard(folder)
        store.discard(replaced.folder)
        return {"classes": classes, "examples": len(pairs)}

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
        body = await request_fields(request, uploads.MAX_SUPPORT_FILES, ADAPT_FIELDS)
        with one_adapt():  # checks, storing and fitting in a worker thread
            return await run_in_threadpool(adapt_job, body)

    @app.get(DOWNLOAD_PATH)
    def download() -> FileResponse:
        """The fitted model as a zip (a worker thread: FastAPI runs a plain def there)."""
        # MAML's module holds a pass's weights during it: saved between passes
        with admitted(), forward_slots if shared_weights else nullcontext():
            view = model.pinned()  # one fit's state, whole, while it is written
            if not view.class_names:
                raise Busy("nothing to download: no classes yet: adapt first (the Adapt "
                           "button, or POST /api/adapt with a support set)")
            folder = Path(tempfile.mkdtemp(prefix="attnmeta-download-"))
            try:
                view.save(folder / DOWNLOAD_NAME)
                archive = folder / f"{DOWNLOAD_NAME}.zip"
                with zipfile.ZipFile(archive, "x", zipfile.ZIP_DEFLATED) as out:
                    for path in sorted((folder / DOWNLOAD_NAME).rglob("*")):
                        out.write(path, path.relative_to(folder).as_posix())
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        return FileResponse(archive, media_type="application/zip",
                            filename=archive.name, headers={"Cache-Control": "no-store"},
                            background=BackgroundTask(shutil.rmtree, folder, True))

    @app.get("/api/support")
    def support_set() -> dict[str, Any]:
        number, pairs, _, _ = fitted_support  # one read: replaced whole by an adapt
        # the model's class order (fit sorts the names), from this one support set
        grouped: dict[str, list[dict[str, Any]]] = {
            name: [] for name in sorted({label for _, label in pairs})}
        for index, (item, label) in enumerate(pairs):
            grouped[label].append(  # a stored upload is "0003-<its name>"
                {"name": item.name.split("-", 1)[-1],
                 "thumbnail": f"/api/support/{number}/{index}"}
                if modality == "image" else {"name": item, "thumbnail": None})
        return {"classes": [{"name": name, "examples": examples}
                            for name, examples in grouped.items() if examples]}

    @app.get("/api/support/{number}/{index}")
    def support_thumbnail(number: str, index: str) -> Response:
        current = fitted_support
        if modality != "image":
            return JSONResponse({"error": "no support images: this model reads sentences "
                                 "(GET /api/support lists them)"}, status_code=404)
        gone = JSONResponse({"error": f"no support image {index:.20} of adapt {number:.20}: "
                             f"this server holds adapt {current.number}'s "
                             f"{len(current.pairs)} (GET /api/support)"}, status_code=404)
        if (number != str(current.number) or not index.isascii() or not index.isdigit()
                or int(index) >= len(current.pairs)):
            return gone
        which = int(index)
        if which not in current.thumbnails:
            try:
                current.thumbnails[which] = thumbnail(current.pairs[which][0])
            except AttnmetaError:  # its adapt replaced (and its folder removed) meanwhile
                return gone
        # no-store: adapt numbers start again at 1 when the server does
        return Response(current.thumbnails[which], media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    def thumbnail(path: Path) -> bytes:
        """A stored support image as the model reads it (its ``fit``), a square JPEG."""
        from PIL import Image

        from attnmeta.tasks.image_folder import load_image

        pixels = load_image(path, THUMBNAIL_PIXELS, model.preprocessing.channels,
                            model.preprocessing.fit)  # [C, S, S]
        square = (pixels * 255).round().astype("uint8").transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(square[:, :, 0] if square.shape[2] == 1 else square).save(
            buffer, "JPEG", quality=90)
        return buffer.getvalue()

    def predict_job(body: RequestFields) -> list[dict[str, Any]]:
        """Records for a request's queries, from one fitted state (an adapt meanwhile
        changes the next prediction, not this one), in one of the forward slots."""
        fields, lists = body.values, body.lists
        with forward_slots:
            view = model.pinned()  # this fit's classes, tensors and support set throughout
            if not view.class_names:
                raise InputError("no classes yet: adapt first (the Adapt button, or POST "
                                 "/api/adapt with a support set)")
            explain = body.yes_no("explain")
            top_k = body.whole("top_k", 1, len(view.class_names),  # None: min(3, N)
                               "the number of fitted classes")
            reject_below = body.probability("reject_below")
            folder = store.new_folder("predict")
            try:
                if modality == "image":
                    names, batch = uploads.image_queries(lists.get("files", []), folder,
                                                         image_size)
                    singles = batch if explain else []
                else:
                    names, batch, singles = uploads.text_queries(fields.get("texts"), folder,
                                                                 explain)
                return predictions(view, batch, singles, names, top_k, reject_below)
            finally:
                store.discard(folder)

    def predictions(view: Any, batch: Any, singles: list[Path], names: list[str],
                    top_k: int | None, reject_below: float | None) -> list[dict[str, Any]]:
        """Records for the queries ``batch`` (read and predicted in chunks); with an
        attention picture for each of ``singles`` (the same queries one by one)."""
        job = progress.start(f"predicting {len(names)} quer{'y' if len(names) == 1 else 'ies'}",
                             len(names))
        done_ok = False
        try:
            logits, _ = view.logits(batch, progress=lambda done, total: job.update(
                done, total, "reading and predicting queries"))
            records = prediction_records(view, logits, names, top_k, reject_below, "top_k")
            if singles:
                from attnmeta.viz.explain import explanation_png

                for done, (query, record) in enumerate(zip(singles, records), 1):
                    explanation = view.explain(query)
                    explanation.query_name = record["input"]
                    record["explanation_png"] = base64.b64encode(
                        explanation_png(explanation)).decode("ascii")
                    job.update(done, len(names), "drawing attention pictures")
            done_ok = True
            return records
        finally:
            job.end("predicted" if done_ok else "predict failed", len(names))

    @app.post("/api/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await request_fields(request, uploads.MAX_QUERY_FILES, PREDICT_FIELDS)
        with admitted():  # checks, storing and predicting in a worker thread
            records = await run_in_threadpool(predict_job, body)
        return {"predictions": records}

    return app


async def request_fields(request: Request, max_files: int, allowed: tuple[str, ...]
                         ) -> RequestFields:
    """The whole body, read before any lock or slot (:func:`read_body`), as typed fields;
    a field ``allowed`` does not name is refused."""
    values, lists = await read_body(request, max_files)
    form = not request.headers.get("content-type", "").startswith("application/json")
    return RequestFields(values, lists, form, allowed,
                         f"{request.method} {request.url.path}")


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
               keep: Path | None = None,
               allow_hosts: Iterable[str] = (), body_seconds: float = BODY_SECONDS) -> None:
    """Serve ``target`` until Ctrl+C; prints the URL and the scripts' token. Binds to this
    machine only unless ``host`` says otherwise (e.g. 0.0.0.0: every network it is on).
    Requests are answered for the Host names of :func:`hosts_to_allow`."""
    try:
        import uvicorn
    except ImportError as error:
        raise MissingDependencyError(f"serve needs {error.name}: expected pip install "
                                     "'attnmeta[serve]'") from error

    sock = bind(host, port)  # first: a port in use fails before the model loads
    allowed = hosts_to_allow(host, allow_hosts)
    try:
        app = create_app(target, keep, allowed_hosts=allowed,
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
