"""A local HTTP server for the download tests: no test reaches the internet."""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest


@dataclass
class LocalServer:
    """Serves the files of ``folder`` at ``url`` (``http://127.0.0.1:<port>``) and records
    the path of every request in ``requests``."""

    folder: Path
    url: str = ""
    requests: list[str] = field(default_factory=list)

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, server_record: LocalServer, **kwargs):
        self.server_record = server_record
        super().__init__(*args, directory=str(server_record.folder), **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server_record.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args) -> None:  # quiet test output
        pass


@pytest.fixture
def local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``, in a daemon thread, shut
    down (joined with a timeout) after the test."""
    # a proxy from the environment must not see (or swallow) requests to 127.0.0.1
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    record = LocalServer(tmp_path / "served")
    record.folder.mkdir()
    handler = functools.partial(_Handler, server_record=record)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 10
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
