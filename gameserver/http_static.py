"""HTTP requests that are not WebSocket upgrades, and the static files of the web demo. No trio.

The WSS port also answers plain HTTPS GET and HEAD, for the browser demo and the JavaScript SDK
(``clients/web``). This module is the pure part: parsing a request head
(:meth:`HttpRequest.from_head`), the files (:class:`StaticSite`, read once at start-up, so
serving costs no disk I/O), and the responses with their security headers
(:class:`Response`). ``gameserver.web`` routes a request to a response; ``gameserver._tws``
reads the request and writes the answer.

The URL map. The URL path is a file's path under the web root (``--web-root``, by default the
bundled ``clients/web``), for its folders ``demo/``, ``src/`` and ``games/``, plus two aliases:

==========================  ================================================================
URL                         file
==========================  ================================================================
``/``                       ``demo/index.html`` (a built-in page saying the demo is not
                            installed if there is none)
``/demo/<path>``            ``demo/<path>``; ``/demo/`` is ``demo/index.html``
``/src/<path>``             ``src/<path>`` (the SDK)
``/games/<path>``           ``games/<path>`` (the games' client modules)
``/<path>``                 alias of ``/demo/<path>``, so that ``demo/index.html`` served
                            at ``/`` finds its neighbours by relative URL
``/sdk/<path>``             alias of ``/src/<path>``; ``/sdk/games/<path>`` of
                            ``/games/<path>``
==========================  ================================================================

Relative imports between the folders (``../src/index.js`` from ``demo/``) work as they do on
disk. Only files on an allow-list made at start-up are served: names of ``A-Z a-z 0-9 . _ -``
(no dotfiles, no ``..``), the extensions of :data:`CONTENT_TYPES`, no symlink that leaves the
web root, at most :data:`MAX_FILE_BYTES` each and :data:`MAX_TOTAL_BYTES` in all. The request
path is percent-decoded and looked up in that table; it is never joined to a file system path.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote_to_bytes

import attrs

#: the bundled web root: ``clients/web`` of this checkout (absent from a wheel install)
BUNDLED_WEB_ROOT = Path(__file__).resolve().parent.parent / "clients" / "web"
#: the folders of the web root that are served, in this order
SERVED_DIRS = ("demo", "src", "games")
CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".map": "application/json",
}
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 32 * 1024 * 1024
MAX_FILES = 2000
MAX_DEPTH = 8
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEAD_LINES = re.compile(rb"\r?\n")

REASONS: Mapping[int, str] = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """A request head that is not HTTP/1.x (the peer's mistake)."""


class WebRootError(Exception):
    """The web root cannot be served (the operator's mistake). ``str()`` is one line."""


# ------------------------------------------------------------------ requests


@attrs.frozen
class HttpRequest:
    """A parsed HTTP/1.x request head. Header names are lower-case; values are stripped."""

    method: str
    target: str
    version: tuple[int, int]
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_head(cls, head: bytes) -> HttpRequest:
        """Parse a request head (up to and including its blank line); BadRequest if it is not
        an HTTP/1.x request. Bare LF line ends are taken, as h11 takes them."""
        lines = _HEAD_LINES.split(head)
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            raise BadRequest("empty request")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise BadRequest("malformed request line")
        method, target, version = parts
        if not method or not set(method) <= _TOKEN:
            raise BadRequest("malformed method")
        match = re.fullmatch(rb"HTTP/1\.([0-9])", version)
        if match is None:
            raise BadRequest("not an HTTP/1.x request")
        if not target or any(c <= 0x20 or c >= 0x7F for c in target):
            raise BadRequest("malformed request target")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or not set(name) <= _TOKEN:
                raise BadRequest("malformed header line")  # obs-fold included
            if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
                raise BadRequest("control character in a header value")
            headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
        return cls(
            method.decode("ascii"), target.decode("ascii"), (1, int(match[1])), tuple(headers)
        )

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str | None:
        """The value of a header that occurs exactly once, else None."""
        found = self.values(name)
        return found[0] if len(found) == 1 else None

    @property
    def is_upgrade(self) -> bool:
        """Whether this asks for a protocol upgrade: such a request goes to the WebSocket
        handshake (trio-websocket), whatever else it says."""
        return any(k == "upgrade" for k, _ in self.headers)

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        return self.target.partition("?")[0]


def decode_path(path: str) -> str | None:
    """The percent-decoded path (UTF-8), or None if it does not decode or holds a NUL or a
    backslash. The result is only ever a key into the file table."""
    try:
        text = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\\" in text:
        return None
    return text


# ------------------------------------------------------------------ responses


@attrs.frozen
class Response:
    """An HTTP response; ``to_bytes`` adds Content-Length, Date and ``Connection: close``."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def to_bytes(self, *, head_only: bool = False, now: float | None = None) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.status != 304:  # a 304 has no body, and must not claim the 200's length
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append(f"Date: {formatdate(now, usegmt=True)}")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only or self.status == 304:
            return head
        return head + self.body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def content_security_policy(connect: str = "") -> str:
    """The CSP of every response: scripts, styles, fonts and fetches from this origin only
    (no inline script or style, no eval), plus ``connect`` (e.g. ``wss://127.0.0.1:8443``),
    no plugins, no framing, no ``<base>``."""
    extra = f" {connect}" if connect else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"connect-src 'self'{extra}; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


def security_headers(connect: str = "") -> tuple[tuple[str, str], ...]:
    """The headers every response carries (see SECURITY.md, "The web demo")."""
    return (
        ("Content-Security-Policy", content_security_policy(connect)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Embedder-Policy", "require-corp"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
    )


def text_response(
    status: int, text: str, connect: str = "", extra: Sequence[tuple[str, str]] = ()
) -> Response:
    """A short ``text/plain`` answer (errors), never cached."""
    headers = (
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Cache-Control", "no-store"),
        *extra,
        *security_headers(connect),
    )
    return Response(status, headers, (text + "\n").encode())


# ------------------------------------------------------------------ the files


@attrs.frozen
class StaticFile:
    """One servable file, in memory."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> StaticFile:
        return cls(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')

    def response(self, connect: str, if_none_match: str | None) -> Response:
        """200, or 304 if the client's ``If-None-Match`` names this version."""
        headers = (
            ("Content-Type", self.content_type),
            ("Cache-Control", "no-cache"),  # revalidate every time (the ETag makes it cheap)
            ("ETag", self.etag),
            *security_headers(connect),
        )
        if if_none_match is not None and self.etag in (t.strip() for t in if_none_match.split(",")):
            return Response(304, headers)
        return Response(200, headers, self.body)


NOT_INSTALLED = StaticFile.of(
    b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gameserver</title></head>
<body><h1>gameserver</h1>
<p>This port speaks WebSocket (<code>gamesync.v2</code>, <code>gamesync.v1</code>) for game
clients.</p>
<p>The web demo is not installed: the web root has no <code>demo/index.html</code>
(see <code>gameserver serve --web-root</code>).</p>
</body></html>
""",
    CONTENT_TYPES[".html"],
)


@attrs.frozen
class StaticSite:
    """The allow-list of servable files, by URL path, read into memory at start-up."""

    files: Mapping[str, StaticFile]
    root: Path | None = None

    @property
    def total_bytes(self) -> int:
        return sum(len(f.body) for f in self.files.values())

    def lookup(self, path: str) -> StaticFile | None:
        """The file at a (decoded) URL path, or None."""
        return self.files.get(path)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], root: Path | None = None) -> StaticSite:
        """A site from ``{"demo/index.html": b"...", "src/x.js": b"..."}`` (paths under the
        web root), with the URL map of the module docstring."""
        table: dict[str, StaticFile] = {}
        for rel, body in files.items():
            ext = os.path.splitext(rel)[1].lower()
            table["/" + rel] = StaticFile.of(body, CONTENT_TYPES[ext])
        _add_aliases(table)
        return cls(table, root)

    @classmethod
    def load(cls, root: Path | None) -> StaticSite:
        """Read the allowed files under ``root`` (None: the bundled web root, which may be
        missing). WebRootError when a given root is not a folder, or is too big."""
        if root is None:
            if not BUNDLED_WEB_ROOT.is_dir():
                return cls({}, None)
            return cls.from_files(read_web_root(BUNDLED_WEB_ROOT), BUNDLED_WEB_ROOT)
        if not root.is_dir():
            raise WebRootError(f"--web-root {root}: not a folder")
        return cls.from_files(read_web_root(root), root)


def _add_aliases(table: dict[str, StaticFile]) -> None:
    demo_index = table.get("/demo/index.html")
    table["/"] = demo_index or NOT_INSTALLED
    if demo_index is not None:
        table["/demo/"] = demo_index
    canonical = list(table)
    for url in canonical:  # the SDK's aliases first: they win over the demo's
        if url.startswith("/src/"):
            table.setdefault("/sdk/" + url.removeprefix("/src/"), table[url])
        elif url.startswith("/games/"):
            table.setdefault("/sdk" + url, table[url])
    for url in canonical:
        if url.startswith("/demo/") and url != "/demo/":
            table.setdefault(url.removeprefix("/demo"), table[url])


def allowed_name(rel: str) -> bool:
    """Whether a path under the web root (``demo/app.js``) may be served: under a served
    folder, each part a plain name (no dotfile, no ``..``), an allowed extension."""
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] not in SERVED_DIRS or len(parts) > MAX_DEPTH + 1:
        return False
    if not all(_SEGMENT.fullmatch(p) for p in parts):
        return False
    return os.path.splitext(parts[-1])[1].lower() in CONTENT_TYPES


def read_web_root(root: Path) -> dict[str, bytes]:
    """The allowed files under ``root``: ``{"demo/index.html": bytes, ...}``. Symlinks are
    followed only while they stay inside the root. WebRootError past the size limits."""
    try:
        real_root = root.resolve(strict=True)
    except OSError as exc:
        raise WebRootError(f"--web-root {root}: cannot read it ({exc.strerror})") from None
    found: dict[str, bytes] = {}
    total = 0
    for rel, path in _candidates(root, real_root):
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise WebRootError(
                    f"--web-root {root}: {rel} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
                )
            body = path.read_bytes()
        except OSError:
            continue  # unreadable (or gone): not served
        total += len(body)
        if total > MAX_TOTAL_BYTES or len(found) >= MAX_FILES:
            raise WebRootError(
                f"--web-root {root}: more than {MAX_FILES} files or "
                f"{MAX_TOTAL_BYTES // (1024 * 1024)} MiB to serve under {', '.join(SERVED_DIRS)}"
            )
        found[rel] = body
    return found


def _candidates(root: Path, real_root: Path) -> Iterable[tuple[str, Path]]:
    for top in SERVED_DIRS:
        base = root / top
        if not _inside(base, real_root) or not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            depth = len(here.relative_to(root).parts)
            dirnames[:] = sorted(d for d in dirnames if _SEGMENT.fullmatch(d) and depth < MAX_DEPTH)
            for name in sorted(filenames):
                path = here / name
                rel = path.relative_to(root).as_posix()
                if allowed_name(rel) and _inside(path, real_root) and path.is_file():
                    yield rel, path


def _inside(path: Path, real_root: Path) -> bool:
    try:
        return path.resolve(strict=True).is_relative_to(real_root)
    except OSError:
        return False
