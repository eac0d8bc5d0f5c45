"""The HTTP plumbing of lesson 9 (09_serve_digits.py): a helper, not a lesson.

Everything here is web engineering, not deep learning: routing, status codes, a size
limit checked before reading, an idle timeout, JSON errors, and the small client that
09's --self-check uses. 09 itself keeps what serving adds to a model (load once, eval(),
one preprocessing, skew, latency). Python's http.server is not meant for production
(its own documentation says so: "http.server is not recommended for production. It
only implements basic security checks"); it serves here because it needs nothing to
install. A real deployment uses a server library (FastAPI with uvicorn, for example).
"""

import base64
import binascii
import ipaddress
import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import dl_utils

# A per-read idle timeout (socketserver sets it on the socket): a client that sends
# nothing for this many seconds is dropped. It is not a limit on a whole request: a client
# that sends a byte every few seconds stays connected.
IDLE_TIMEOUT = 10


class RequestError(Exception):
    """What the client sent cannot be served; carries the HTTP status to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def decode_data_url(text) -> bytes:
    """'data:image/png;base64,iVBOR...' (what a canvas's toDataURL() gives) -> file bytes."""
    if not isinstance(text, str) or not text.startswith("data:image/") or "," not in text:
        raise RequestError(400, 'expected "image": "data:image/png;base64,..." (a data URL)')
    header, payload = text.split(",", 1)
    if not header.endswith(";base64"):
        raise RequestError(400, "the data URL must be base64-encoded")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f"the image is not valid base64 ({err})") from err




class Handler(BaseHTTPRequestHandler):
    """One instance per request, each in its own thread (ThreadingHTTPServer).

    Only two things are served: the page (from memory, read at start-up) and the API.
    No path is ever mapped to a file on disk, so no request can read other files.
    """

    server_version = "DLBasics/1"
    timeout = IDLE_TIMEOUT  # a client that sends nothing for this long is dropped
    ROUTES = {"/": "GET", "/index.html": "GET", "/api/models": "GET", "/api/predict": "POST"}

    def do_GET(self):
        path = self.route("GET")
        if path == "/api/models":
            self.send_json(200, self.server.describe())
        elif path:
            self.send_body(200, self.server.page, "text/html; charset=utf-8")

    def do_POST(self):
        if not self.route("POST"):
            return
        try:
            body = self.read_json()
            if not isinstance(body, dict) or "image" not in body:
                raise RequestError(400, 'expected a JSON object {"image": "data:image/..."}')
            self.send_json(200, self.server.answer(decode_data_url(body["image"])))
        except RequestError as err:
            self.send_json(err.status, {"error": str(err)})
        except OSError:  # the client went away or stopped sending: nobody to answer
            self.close_connection = True
        except Exception as err:  # a bug of ours: answer 500, keep serving, log it
            self.log_error("internal error: %r", err)
            self.send_json(500, {"error": "internal error"})

    def read_json(self):
        """The body as JSON; anything that is not JSON is the client's error (400)."""
        try:
            return json.loads(self.read_body())
        except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, a 5,000-digit
            # number (Python refuses over 4,300 digits), arrays nested 100,000 deep...
            raise RequestError(400, f"the body is not valid JSON ({type(err).__name__})") \
                from err

    def do_HEAD(self):  # what GET would answer, without the body
        self.do_GET()

    def do_PUT(self):  # the other common methods: 405 where the path exists, else 404
        self.route(self.command)

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT  # noqa: N815 (http.server's names)

    def route(self, method):
        """The request's path if it accepts `method`; else answers 404 or 405, returns None."""
        path = urlsplit(self.path).path
        if path not in self.ROUTES:
            self.send_json(404, {"error": f"no such page: {path}"})
        elif self.ROUTES[path] != method:
            self.send_json(405, {"error": f"{method} is not allowed on {path}"},
                           {"Allow": self.ROUTES[path]})
        else:
            return path
        return None

    def read_body(self) -> bytes:
        """The request body, refused before reading it if it is missing or too large.

        A size limit protects the server: without one, a single request could send
        gigabytes and fill the memory. We check the announced length before reading a
        single byte of it.
        """
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "a Content-Length header is required")
        if not (length.isascii() and length.isdecimal()):  # not "²", which int() refuses
            raise RequestError(400, f"bad Content-Length {length!r}")
        if int(length) > self.server.max_body:
            self.close_connection = True  # the unread body must not be taken for a request
            raise RequestError(413, f"the body is {int(length):,} bytes; the limit is "
                                  f"{self.server.max_body:,}")
        return self.rfile.read(int(length))

    def send_json(self, status, payload, headers=None):
        self.send_body(status, json.dumps(payload).encode(), "application/json", headers)

    def send_body(self, status, body: bytes, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """Errors found by http.server itself (a garbled request line...), as JSON too."""
        self.close_connection = True
        try:
            self.send_json(code, {"error": message or self.responses.get(code, ("",))[0]})
        except OSError:  # the client is gone: nothing to answer
            pass

    def log_message(self, fmt, *args):  # one line per request only with --verbose
        if self.server.verbose:
            super().log_message(fmt, *args)


class QuietServer(ThreadingHTTPServer):
    """A client that leaves early (a closed tab, a dropped connection) is not an error of
    ours: no traceback for it. Anything else is still reported, in one line."""

    request_queue_size = 128  # connections that may wait to be accepted (socketserver's
    # default, 5, is a small margin for a burst of clients: beyond it, one can be refused)

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"error while answering {client_address[0]}: {error!r}", file=sys.stderr)


def make_server(host, port, answer, describe, page: bytes, max_body, verbose=False):
    """A threaded HTTP server on (host, port); port 0 picks a free one.

    answer(image bytes) -> the JSON answer of POST /api/predict (it raises RequestError
    for bad input); describe() -> the JSON answer of GET /api/models; page: the HTML.
    """
    try:
        server = QuietServer((host, port), Handler)
    except OSError as err:
        raise dl_utils.FriendlyError(
            f"cannot listen on {host}:{port}: {err.strerror or err}"
            + (" (another program uses that port: try --port 8001)"
               if getattr(err, "errno", None) in (48, 98) else "")) from err
    server.daemon_threads = True  # Ctrl-C does not wait for open connections
    server.answer, server.describe, server.page = answer, describe, page
    server.max_body, server.verbose = max_body, verbose
    return server




# ---- The self-check's client ----------------------------------------------------------
def post(url, body: bytes, content_type="application/json"):
    """POST `body` to `url`; (HTTP status, decoded JSON answer), errors included."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def predict_request(png: bytes) -> bytes:
    """The JSON body the page sends: the canvas as a PNG data URL."""
    return json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()}
                      ).encode()


def ask_about_digits(url, drawings, y):
    """A few drawn test digits through the API, each model's answer printed."""
    rows = []
    for png, label in zip(drawings, y.tolist()):
        status, answer = post(f"{url}/api/predict", predict_request(png))
        rows.append([label, status, *(m["prediction"] for m in answer["models"])])
    names = [Path(m["checkpoint"]).stem for m in answer["models"]]
    dl_utils.print_table(["true digit", "HTTP status", *names], rows)


def bad_requests(url, blank_png: bytes):
    """What the API answers to bad input: a status and one line, and it keeps serving."""
    blank = predict_request(blank_png)
    cases = [("not JSON", "/api/predict", b"{nope"),
             ("not an image", "/api/predict", json.dumps({"image": "data:image/png;base64,"
                                                          "aGVsbG8="}).encode()),
             ("a blank canvas", "/api/predict", blank),
             ("an unknown path", "/api/nothing", b"{}")]
    rows = [[what, *post(url + path, body)] for what, path, body in cases]
    dl_utils.print_table(["request", "status", "answer"],
                         [[w, s, a.get("error", "")[:60]] for w, s, a in rows])




def is_loopback(host) -> bool:
    """True for addresses only this computer can reach (127.x.x.x, ::1, localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to an outside address
        return False
