"""A local, read-only HTTP server for neuroglancer: the bundled client and precomputed data.

Neuroglancer reads precomputed volumes with plain GETs (plus CORS pre-flights when the client comes
from another origin), so a static file server is all it needs. Each mounted folder is served under
``/data/<name>/``; the neuroglancer client that ships in the ``neuroglancer`` package is served at
``/``, so links work offline. Only GET, HEAD and OPTIONS are answered, and tornado's static handler
refuses any path that resolves outside its folder (``..``, absolute paths).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import neuroglancer.static
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from ffnops.errors import FfnopsError

CLIENT_DIR = Path(neuroglancer.static.__file__).parent / "client"
_MOUNT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class ReadOnlyFiles(tornado.web.StaticFileHandler):
    """Static files with the CORS headers a neuroglancer client on another origin needs."""

    SUPPORTED_METHODS = ("GET", "HEAD", "OPTIONS")  # type: ignore[assignment]

    def set_default_headers(self) -> None:
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "x-requested-with, range")
        self.set_header("Access-Control-Expose-Headers", "content-range, content-length")

    def options(self, *args: Any) -> None:
        self.set_status(204)
        self.finish()

    def compute_etag(self) -> str | None:
        return None  # files may be rewritten between runs; let the client revalidate


class ViewServer:
    """Serves ``mounts`` (name -> folder) and the neuroglancer client on ``host:port``.

    The socket is bound on construction, so a port in use fails here with a clear message;
    ``port=0`` picks a free one. ``start()`` serves from a background thread.
    """

    def __init__(self, mounts: Mapping[str, Path], host: str = "127.0.0.1", port: int = 0):
        for name, folder in mounts.items():
            if not _MOUNT_NAME.match(name):
                raise ValueError(f"mount name {name!r} must be letters, digits, '.', '_' or '-'")
            if not Path(folder).is_dir():
                raise FfnopsError(f"nothing to serve: {folder} is not a folder")
        self.mounts = {name: Path(folder).resolve() for name, folder in mounts.items()}
        try:
            self._sockets = tornado.netutil.bind_sockets(port, address=host)
        except OSError as exc:
            raise FfnopsError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another with viewer.port="
            ) from None
        self.host = host
        self.port = int(self._sockets[0].getsockname()[1])
        self._loop: tornado.ioloop.IOLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def data_url(self, name: str) -> str:
        """The URL under which mount ``name`` is served."""
        return f"{self.url}/data/{name}"

    def _application(self) -> tornado.web.Application:
        routes: list[Any] = [
            (rf"/data/{re.escape(name)}/(.*)", ReadOnlyFiles, {"path": str(folder)})
            for name, folder in self.mounts.items()
        ]
        routes.append(
            (r"/(.*)", ReadOnlyFiles, {"path": str(CLIENT_DIR), "default_filename": "index.html"})
        )
        return tornado.web.Application(routes)

    def _serve(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        self._loop = tornado.ioloop.IOLoop.current()
        server = tornado.httpserver.HTTPServer(self._application())
        server.add_sockets(self._sockets)
        self._ready.set()
        self._loop.start()
        server.stop()

    def start(self) -> ViewServer:
        self._thread = threading.Thread(target=self._serve, name="ffnops-view", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.add_callback(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
