"""The web plumbing of lesson 9 (09_serve_digits.py): a helper, not a lesson.

09 defines its API with FastAPI (what the server answers). This file runs that API with
uvicorn, the server FastAPI's own documentation uses, and holds the small client that
09's --self-check uses. What uvicorn does for us, so that the course no longer writes
it: parsing HTTP (a garbled request, a Content-Length of "²" or a header that never ends
is a 400 from uvicorn, not our problem), keep-alive, a 503 once too many connections are
open (`limit_concurrency`), closing connections that idle between requests
(`timeout_keep_alive`), and Ctrl-C that finishes the requests in flight.

Three protections are ours. RequestGuard checks each request before the app sees it:
on a server bound to this computer only, a Host header that names another site is
refused (a web page you visit could otherwise read the API by "DNS rebinding": its own
domain pointed at 127.0.0.1); a request with both Content-Length and Transfer-Encoding,
whose end the two would place differently (the way "request smuggling" hides a second
request inside the first), is refused and its connection closed, as RFC 9112 asks; and
a Content-Length over the body limit is refused before the body is read. Each answer has
the API's one error shape, {"error": "..."}, and closes the connection.

The third is a deadline for receiving a request, because uvicorn has none.
uvicorn waits for a request's headers and body as long as bytes keep trickling in, so
a client that sends one byte every few seconds ("slowloris") holds its connection for
ever, and enough of them fill `limit_concurrency` (xorbitsai/inference#5213 shows the
same hole and the same cure). RequestDeadline below closes such connections.
"""

import base64
import binascii
import contextlib
import http.client
import ipaddress
import json
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import uvicorn
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from _course.cli import print_table
from _course.files import FriendlyError

REQUEST_TIMEOUT = 10  # seconds a connection has to deliver a whole request, headers and
# body, from when it opens or from its previous answer; then it is closed
MAX_CONNECTIONS = 256  # open connections at once; more get 503 at once. Bounds memory:
# each holds at most one body (09's MAX_BODY), and 200 clients at once are all served
BACKLOG = 2048  # connections the system queues before they are accepted (uvicorn's)
KEEP_ALIVE = 5  # seconds an idle connection stays open for its next request (uvicorn's
# default): a browser reuses it, and it frees itself when the tab goes quiet


class RequestError(Exception):
    """What the client sent cannot be served; carries the HTTP status to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def decode_data_url(text: str) -> bytes:
    """'data:image/png;base64,iVBOR...' (what a canvas's toDataURL() gives) -> the
    file's bytes."""
    if not text.startswith("data:image/") or "," not in text:
        raise RequestError(400, 'expected "image": "data:image/png;base64,..." '
                                "(a data URL)")
    header, payload = text.split(",", 1)
    if not header.endswith(";base64"):
        raise RequestError(400, "the data URL must be base64-encoded")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f"the image is not valid base64 ({err})") from err


def error(status, message, headers=None):
    """Every error the API answers has one shape: {"error": "one line"}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def answer_errors(app, expected: dict):
    """Every error as {"error": "one line"}: ours, a body that does not fit, FastAPI's.

    FastAPI answers a body that does not fit the endpoint's model with 422 and a list of
    details; 09 keeps 422 for "a valid request with no digit in it" and answers a
    malformed body with 400, the client's mistake, in one line that shows the body
    expected at that path (`expected`: {path: an example body}).
    """
    # 09's own: 400 a bad image, 413 too many pixels, 422 no digit, 409 a full folder
    @app.exception_handler(RequestError)
    def request_error(request, err):
        return error(err.status, str(err))

    @app.exception_handler(RequestValidationError)  # the body does not fit the model
    def invalid_body(request, err):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "the body"
        problem = f"{where}: {first['msg']}"
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error")
            problem = f"the body is not valid JSON ({reason})"
        body = expected.get(request.url.path, "JSON")
        return error(400, f"{problem}; expected {body} sent as application/json")

    @app.exception_handler(StarletteHTTPException)  # 404, and 405 with its Allow header
    def http_error(request, err):
        detail = err.detail
        if err.status_code == 404:
            detail = f"no such page: {request.url.path}"
        return error(err.status_code, str(detail), getattr(err, "headers", None))


class RequestDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 connection, plus a deadline for receiving each request.

    A timer starts when the connection opens and again after each answer. When it
    fires, a connection still receiving (no request yet, its body incomplete, or idle
    after an answer) is closed; one whose request is being answered is left alone.
    """

    def connection_made(self, transport):
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Nagle's algorithm off (make_server says why)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = self.loop.call_later(REQUEST_TIMEOUT, self.too_slow)

    def on_response_complete(self):
        super().on_response_complete()
        self.deadline.cancel()
        self.deadline = self.loop.call_later(REQUEST_TIMEOUT, self.too_slow)

    def too_slow(self):
        cycle = self.cycle
        receiving = cycle is None or cycle.more_body or cycle.response_complete
        if receiving and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc):
        self.deadline.cancel()
        super().connection_lost(exc)


class RequestGuard:
    """ASGI middleware around the whole app: refuse, before the app sees them, a Host
    that is not this computer (when served on loopback only), Content-Length together
    with Transfer-Encoding, and a Content-Length over `max_body` (None: no limit here).
    Each refusal closes the connection. make_server wraps every app it serves in it."""

    def __init__(self, app, max_body: int | None, loopback_only: bool):
        self.app = app
        self.max_body = max_body
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        problem = self.problem(scope) if scope["type"] == "http" else None
        if problem is None:
            return await self.app(scope, receive, send_closing_on_413(send))
        status, message = problem
        response = JSONResponse({"error": message}, status,
                                headers={"Connection": "close"})
        await response(scope, receive, send)

    def problem(self, scope):
        """(status, one line) for a request to refuse, or None."""
        headers = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            headers.setdefault(key, []).append(value.decode("latin-1"))
        host = headers.get("host", [""])[0]
        if self.loopback_only and host and not is_loopback(host_name(host)):
            return 400, ("this server answers only requests addressed to this "
                         f"computer, not to {host[:60]!r}")
        if "transfer-encoding" in headers and "content-length" in headers:
            return 400, ("Content-Length together with Transfer-Encoding: send one of "
                         "them")
        length = headers.get("content-length", ["0"])[0]
        limit = self.max_body
        if limit is not None and length.isdigit() and int(length) > limit:
            return 413, (f"the body has {int(length):,} bytes; the limit is "
                         f"{self.max_body:,}")
        return None


def send_closing_on_413(send):
    """`send`, adding Connection: close to a 413: a body refused while it was being read
    (a chunked one, counted by FastAPI) leaves unread bytes that no next request may
    start from."""
    async def wrapped(message):
        if message["type"] == "http.response.start" and message["status"] == 413:
            message = {**message, "headers": [*message.get("headers", []),
                                              (b"connection", b"close")]}
        await send(message)
    return wrapped


def host_name(host_header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1', 'LocalHost' ->
    'localhost'."""
    try:
        return urllib.parse.urlsplit("//" + host_header).hostname or ""
    except ValueError:  # a malformed port or bracket
        return ""


def make_server(app, host, port, verbose=False, max_connections=MAX_CONNECTIONS):
    """(uvicorn server for `app`, its listening socket) on (host, port); port 0: a
    free one.

    We open the socket ourselves, so a port in use is one clear line and the port that
    port 0 picked is known before the server starts.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on sockets that say they are TCP. With it on, a small answer on a kept-alive
    # connection waits for the client's delayed ACK: about 40 ms per request, measured
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if os.name != "nt":  # restart at once on a port still in TIME_WAIT (on Windows,
        # SO_REUSEADDR would let two servers share the port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening from here on: a client that connects before uvicorn runs waits in
        # the queue (the backlog) until it is answered, instead of being refused
        sock.listen(BACKLOG)
    except OSError as err:
        sock.close()
        raise FriendlyError(
            f"cannot listen on {host}:{port}: {err.strerror or err}"
            + (" (another program uses that port: try --port 8001)"
               if getattr(err, "errno", None) in (48, 98, 10048) else "")) from err
    guarded = RequestGuard(app, getattr(app, "max_body_size", None), is_loopback(host))
    config = uvicorn.Config(guarded, http=RequestDeadline,
                            limit_concurrency=max_connections, backlog=BACKLOG,
                            timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=2,
                            access_log=verbose,
                            log_level="info" if verbose else "warning", lifespan="off")
    return AnnouncingServer(config), sock


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, printing `announcement` (if set) once it is serving: whoever
    reads that line and connects at once is answered, never refused."""

    def __init__(self, config):
        super().__init__(config)
        self.announcement = None

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if self.started and self.announcement:
            print(self.announcement, flush=True)


def url_of(sock) -> str:
    host, port = sock.getsockname()[:2]
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def running(app, host="127.0.0.1", port=0, **kwargs):
    """Serve `app` from a background thread for the duration of a `with`; yields its
    URL."""
    server, sock = make_server(app, host, port, **kwargs)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            thread.join(0.01)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def serve_until_ctrl_c(app, host, port, verbose=False):
    """Serve `app` in this thread until Ctrl-C (uvicorn finishes the requests in
    flight)."""
    server, sock = make_server(app, host, port, verbose)
    # Printed by the server once it serves, not before it starts: a browser or a script
    # that connects the moment the address appears is answered at once
    server.announcement = (f"\nOpen {url_of(sock)}/ in a browser and draw a digit. "
                           "Ctrl-C stops the server.")
    try:  # (a Ctrl-C the moment the line appears is handled too)
        server.run(sockets=[sock])  # on Ctrl-C, uvicorn raises KeyboardInterrupt last
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("\nStopped.")
    return 0


# ---- The self-check's client ---------------------------------------------------------
class Client:
    """POSTs to one server, on one kept-alive connection (as a browser does) or on a new
    connection per request. A context manager: the connection closes at the end."""

    def __init__(self, url, keep_alive=True):
        self.url = url
        self.keep_alive = keep_alive
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, path, body: bytes):
        """(HTTP status, decoded JSON answer)."""
        if not self.keep_alive:
            return post(self.url + path, body)
        self.conn.request("POST", path, body=body,
                          headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()


def post(url, body: bytes, content_type="application/json"):
    """POST `body` to `url`; (HTTP status, decoded JSON answer), errors included."""
    request = urllib.request.Request(url, data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def predict_request(png: bytes) -> bytes:
    """The JSON body the page sends: the canvas as a PNG data URL."""
    encoded = base64.b64encode(png).decode()
    return json.dumps({"image": "data:image/png;base64," + encoded}).encode()


def ask_about_digits(url, drawings, y):
    """A few drawn test digits through the API, each model's answer printed."""
    rows = []
    for png, label in zip(drawings, y.tolist()):
        status, answer = post(f"{url}/api/predict", predict_request(png))
        rows.append([label, status, *(m["prediction"] for m in answer["models"])])
    names = [Path(m["checkpoint"]).stem for m in answer["models"]]
    print_table(["true digit", "HTTP status", *names], rows)


def bad_requests(url, blank_png: bytes):
    """What the API answers to bad input: a status and one line, and it keeps
    serving."""
    blank = predict_request(blank_png)
    not_an_image = json.dumps({"image": "data:image/png;base64,aGVsbG8="}).encode()
    cases = [("not JSON", "/api/predict", b"{nope"),
             ("no image field", "/api/predict", b'{"picture": 1}'),
             ("not an image", "/api/predict", not_an_image),
             ("a blank canvas", "/api/predict", blank),
             ("an unknown path", "/api/nothing", b"{}")]
    rows = [[what, *post(url + path, body)] for what, path, body in cases]
    print_table(["request", "status", "answer"],
                [[w, s, a.get("error", "")[:60]] for w, s, a in rows])


def is_loopback(host) -> bool:
    """True for addresses only this computer can reach (127.x.x.x, ::1, localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to an outside address
        return False
