"""A local, read-only HTTP server for neuroglancer: the bundled client and precomputed data.

Neuroglancer reads precomputed volumes with plain GETs (plus CORS pre-flights when the client comes
from another origin), so a static file server is all it needs. Each mounted folder is served under
``/data/<name>/``; the neuroglancer client that ships in the ``neuroglancer`` package is served at
``/``, so links work offline.

What it refuses (docs/inference.md, "Looking at results"):

- any method but GET, HEAD and OPTIONS; any path that resolves outside its folder (``..``,
  absolute paths; tornado's static handler) and a path holding a NUL byte (400); folder listings;
- a request whose ``Host`` header is not a name of this server (403): a web page cannot reach
  it by DNS rebinding, pointing a name of its own at 127.0.0.1;
- cross-origin reads from any origin but the configured neuroglancer client(s) and this server:
  ``Access-Control-Allow-Origin`` names the asking origin only when it is one of those.

It binds to 127.0.0.1 unless told otherwise, and warns when bound to an address other machines
can reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import neuroglancer.static
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from ffnops.errors import FfnopsError

CLIENT_DIR = Path(neuroglancer.static.__file__).parent / "client"
_MOUNT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def origin_of(url: str) -> str:
    """The origin (``scheme://host[:port]``) a browser sends for pages from ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ReadOnlyFiles(tornado.web.StaticFileHandler):
    """Static files for a neuroglancer client: checked Host, CORS for the allowed origins only."""

    SUPPORTED_METHODS = ("GET", "HEAD", "OPTIONS")  # type: ignore[assignment]

    def initialize(  # type: ignore[override]
        self,
        path: str,
        hosts: frozenset[str],
        origins: set[str],
        default_filename: str | None = None,
        served: list[str] | None = None,
    ) -> None:
        super().initialize(path, default_filename)
        self.hosts, self.origins, self.served = hosts, origins, served
        self.set_default_headers()  # tornado set them before the origins were known

    def prepare(self) -> None:
        host = self.request.host_name.strip("[]").lower()
        if host not in self.hosts:
            raise tornado.web.HTTPError(403, f"Host {self.request.host!r} is not this server")
        if "\x00" in self.request.path or "%00" in self.request.uri.lower():
            raise tornado.web.HTTPError(400, "NUL byte in the path")

    def set_default_headers(self) -> None:
        """CORS for the allowed origins, on every answer: also on errors (a 404 for a chunk never
        written, which neuroglancer reads as empty), whose headers tornado resets to these."""
        self.set_header("Vary", "Origin")
        origin = self.request.headers.get("Origin")
        if origin is not None and origin in getattr(self, "origins", ()):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "x-requested-with, range")
            self.set_header("Access-Control-Expose-Headers", "content-range, content-length")

    def options(self, *args: Any) -> None:
        origin = self.request.headers.get("Origin")
        self.set_status(204 if origin is None or origin in self.origins else 403)
        self.finish()

    def on_finish(self) -> None:
        if self.served is not None and self.request.method == "GET" and self.get_status() == 200:
            self.served.append(self.request.path)

    def compute_etag(self) -> str | None:
        return None  # files may be rewritten between runs; let the client revalidate


class ViewServer:
    """Serves ``mounts`` (name -> folder) and the neuroglancer client on ``host:port``.

    The socket is bound on construction, so a port in use fails here with a clear message;
    ``port=0`` picks a free one. ``start()`` serves from a background thread.
    """

    def __init__(
        self,
        mounts: Mapping[str, Path],
        host: str = "127.0.0.1",
        port: int = 0,
        client_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ):
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
        names = {*LOOPBACK_NAMES, *(h.strip("[]").lower() for h in allowed_hosts)}
        if not is_loopback(host):
            names |= {
                host.strip("[]").lower(),
                socket.gethostname().lower(),
                socket.getfqdn().lower(),
            }
            print(
                f"warning: viewer.host={host} is not a loopback address: anyone who can reach "
                f"this machine on port {self.port} can read the served data",
                file=sys.stderr,
            )
        self.hosts = frozenset(names)
        own = {f"http://{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        self.origins: set[str] = own | {origin_of(url) for url in client_origins}
        self._loop: tornado.ioloop.IOLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # The paths of the data files answered (GET, 200), in order: what the viewer fetched.
        self.served: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def data_url(self, name: str) -> str:
        """The URL under which mount ``name`` is served."""
        return f"{self.url}/data/{name}"

    def allow_origin(self, url: str) -> None:
        """Lets the neuroglancer client served from ``url``'s origin read the data too."""
        self.origins.add(origin_of(url))

    def _application(self) -> tornado.web.Application:
        checks = {"hosts": self.hosts, "origins": self.origins}
        routes: list[Any] = [
            (
                rf"/data/{re.escape(name)}/(.*)",
                ReadOnlyFiles,
                {"path": str(folder), "served": self.served, **checks},
            )
            for name, folder in self.mounts.items()
        ]
        client = {"path": str(CLIENT_DIR), "default_filename": "index.html", **checks}
        routes.append((r"/(.*)", ReadOnlyFiles, client))
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
