"""Lesson 9: serve the models: draw a digit in the browser and watch the networks read it.

A trained model is only useful once something can ask it questions. This script puts
every checkpoint of the course behind a small web server (Python's own http.server, no
framework): a page to draw on, and an HTTP API that any program can call. It teaches
what serving adds to a model: preprocessing that must match training exactly, inputs
that cannot be trusted, latency, and threads.

Run it:
    python 09_serve_digits.py                  # then open http://127.0.0.1:8000 and draw
    python 09_serve_digits.py --port 8080      # another port
    python 09_serve_digits.py --self-check     # no browser: digits through the API, latency
(`make run` uses --self-check: it starts the server on a free port, sends it test digits
drawn the way a canvas draws them, prints the answers and the latency, and stops.)

The API:
    POST /api/predict   {"image": "data:image/png;base64,..."}   (PNG or JPEG)
    ->  {"input": 28x28 grey levels 0-255, "models": [{"name", "checkpoint", "prediction",
        "probabilities"}], "resized_only": [{"name", "prediction"}]}
    GET /api/models     the models being served
    Errors: {"error": "..."} with 400 (bad JSON or image), 411 (no Content-Length), 413
    (too large), 422 (no digit in the image), 404 (unknown path), 405 (wrong method).
"""

import base64
import binascii
import importlib
import io
import ipaddress
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image, ImageFilter

import dl_utils

lesson04 = importlib.import_module("04_load_model")  # the ONE digit preparation

# ---- Settings: each has a flag (-h lists them) ----
HOST = "127.0.0.1"  # loopback: only programs on this computer can connect
PORT = 8000
MAX_BODY = 2_000_000  # bytes per request: ample for a canvas PNG (--self-check prints
# the size of its requests) and for a phone photo sent as a JPEG
REQUEST_TIMEOUT = 10  # seconds a client may take to send its request, then it is dropped
CANVAS = 280  # the page's drawing pad, in pixels (10x MNIST's 28)
SELF_CHECK_REQUESTS = 100  # requests timed by --self-check (make bench reports them)
DRAWN_DIGITS = 1000  # test digits re-drawn canvas-style to measure accuracy on drawings
SEED = 0
PAGE = dl_utils.ROOT / "web" / "draw.html"
NO_MODEL_HINT = ("No trained model in models/ yet: run python 03_train_mnist.py and python "
                 "06_convolutional_network.py, then restart this server.")


# ---- 1. The models: loaded once, at start-up ---------------------------------------------
def load_models(folder: Path, device) -> list[dict]:
    """Every course checkpoint in `folder`, loaded once and put in eval mode.

    Loading takes milliseconds to seconds; a request should take milliseconds: load once,
    serve many. Only state_dict checkpoints are loaded (weights_only=True): the *_whole.pt
    pickles are never opened, and *_interrupted.pt files are partial runs.
    """
    served = []
    for path in sorted(Path(folder).glob("*.pt")):
        if path.stem.endswith(("_whole", "_interrupted")):
            continue
        try:
            model, checkpoint = dl_utils.load_checkpoint(path, device=device)
        except dl_utils.FriendlyError as err:
            print(f"  skipped {dl_utils.display_path(path)}: {err}")
            continue
        # eval(): dropout off, batch norm on its running statistics. Forward passes then
        # change nothing in the model, which is what makes serving from threads safe.
        model.eval()
        served.append({"name": checkpoint["model_class"], "model": model,
                       "checkpoint": dl_utils.display_path(path)})
    return served


# ---- 2. One preprocessing, shared with lesson 4 ---------------------------------------------
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


def prepare(image_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(prepared, resized_only): two 28x28 uint8 versions of the posted image.

    prepared is lesson 4's digit preparation, the very same function (invert dark ink
    on light paper, crop, scale into 20x20, centre by mass): the model sees a drawing
    the way it saw its training digits. resized_only merely shrinks the grey picture to
    28x28: what a server that forgot the preparation would feed the model. The gap
    between the two answers is "training/serving skew", the classic production bug:
    the code that prepares inputs at serving time differs from training's, and the
    model silently gets worse with no error anywhere.
    """
    try:
        grey = lesson04.read_grayscale(io.BytesIO(image_bytes), name="the posted image")
    except lesson04.ImageTooLarge as err:
        raise RequestError(413, str(err)) from err
    except dl_utils.FriendlyError as err:
        raise RequestError(400, str(err)) from err
    try:
        prepared = lesson04.digit_from_gray(grey, "the posted image")
    except dl_utils.FriendlyError as err:  # a blank canvas
        raise RequestError(422, f"{err}: draw a digit first") from err
    resized = np.array(grey.resize((28, 28), Image.Resampling.BILINEAR))  # a writable copy
    return prepared, resized


def predict(models, pixels: np.ndarray) -> list[dict]:
    """Each model's prediction and ten probabilities for one 28x28 uint8 image.

    torch.inference_mode() is torch.no_grad() and more: tensors made inside it can never
    join autograd, which lets PyTorch skip some bookkeeping. For serving it is the one
    to use. Several threads may run this at once: each has its own input tensor, and
    eval-mode models only read their weights.
    """
    answers = []
    X = dl_utils.normalize(torch.from_numpy(pixels)[None])  # [1, 1, 28, 28], once for all
    with torch.inference_mode():
        for served in models:
            model = served["model"]
            probs = torch.softmax(model(X.to(next(model.parameters()).device)), dim=1)[0].cpu()
            answers.append({"name": served["name"], "checkpoint": served["checkpoint"],
                            "prediction": int(probs.argmax()),
                            "probabilities": [round(p, 6) for p in probs.tolist()]})
    return answers


def answer_image(models, image_bytes: bytes) -> dict:
    """The whole API answer for one posted image."""
    prepared, resized = prepare(image_bytes)
    skew = predict(models, resized)
    return {"input": prepared.tolist(), "models": predict(models, prepared),
            "resized_only": [{"name": a["name"], "checkpoint": a["checkpoint"],
                              "prediction": a["prediction"]} for a in skew],
            "hint": "" if models else NO_MODEL_HINT}


# ---- 3. The HTTP server --------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    """One instance per request, each in its own thread (ThreadingHTTPServer).

    Only two things are served: the page (from memory, read at start-up) and the API.
    No path is ever mapped to a file on disk, so no request can read other files.
    """

    server_version = "DLBasics/1"
    timeout = REQUEST_TIMEOUT  # a client that connects and sends nothing is dropped
    ROUTES = {"/": "GET", "/index.html": "GET", "/api/models": "GET", "/api/predict": "POST"}

    def do_GET(self):
        path = self.route("GET")
        if path == "/api/models":
            models = self.server.models
            self.send_json(200, {"models": [{"name": m["name"], "checkpoint": m["checkpoint"]}
                                            for m in models],
                                 "hint": "" if models else NO_MODEL_HINT})
        elif path:
            self.send_body(200, self.server.page, "text/html; charset=utf-8")

    def do_POST(self):
        if not self.route("POST"):
            return
        try:
            body = json.loads(self.read_body())
            if not isinstance(body, dict) or "image" not in body:
                raise RequestError(400, 'expected a JSON object {"image": "data:image/..."}')
            self.send_json(200, answer_image(self.server.models, decode_data_url(body["image"])))
        except RequestError as err:
            self.send_json(err.status, {"error": str(err)})
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            self.send_json(400, {"error": f"the body is not valid JSON ({err})"})
        except Exception as err:  # a bug of ours: answer 500, keep serving, log it
            self.log_error("internal error: %r", err)
            self.send_json(500, {"error": "internal error"})

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
        if not length.isdigit():
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


def make_server(host, port, models, max_body=MAX_BODY, verbose=False) -> ThreadingHTTPServer:
    """A threaded HTTP server on (host, port); port 0 picks a free one."""
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as err:
        raise dl_utils.FriendlyError(
            f"cannot listen on {host}:{port}: {err.strerror or err}"
            + (" (another program uses that port: try --port 8001)"
               if getattr(err, "errno", None) in (48, 98) else "")) from err
    server.daemon_threads = True  # Ctrl-C does not wait for open connections
    server.models, server.max_body, server.verbose = models, max_body, verbose
    server.page = PAGE.read_bytes()
    return server


# ---- 4. Do drawn digits work? Measured on test digits re-drawn like a canvas ---------------
def draw_like_a_canvas(digit: np.ndarray, rng) -> Image.Image:
    """An MNIST test digit as someone would draw it on the page's pad.

    A pen draws solid strokes of one width, at any size, anywhere: so the digit is
    scaled to a random size, made solid (on or off, no soft grey), thickened by a random
    amount, pasted at a random place on a 280x280 pad, dark on white (one in five light
    on black). The result is an RGBA image, as a canvas produces.
    """
    size = int(rng.integers(90, CANVAS + 1))  # the digit's 20x20 box becomes 64-200 px
    big = Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)
    ink = Image.fromarray(((np.asarray(big) > 100) * 255).astype(np.uint8))
    width = int(rng.choice([1, 3, 5, 7, 9]))  # how much thicker than MNIST's own strokes
    if width > 1:
        ink = ink.filter(ImageFilter.MaxFilter(width))
    pad = Image.new("L", (CANVAS, CANVAS), 255)
    x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
    pad.paste(0, (x, y, x + size, y + size), mask=ink)
    if rng.random() < 0.2:
        pad = Image.eval(pad, lambda v: 255 - v)
    return pad.convert("RGBA")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_test_digits(n, seed):
    """n test digits (the first n), each re-drawn like a canvas, as PNG files in memory."""
    _, _, test_X, test_y = dl_utils.load_mnist_tensors()
    rng = np.random.default_rng(seed)
    drawings = [png_bytes(draw_like_a_canvas(test_X[i].numpy(), rng)) for i in range(n)]
    return test_X[:n].numpy(), test_y[:n], drawings


def accuracy_on(model, pixels: np.ndarray, y) -> float:
    """Accuracy of one model on a stack of 28x28 uint8 images, in one batch."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        X = dl_utils.normalize(torch.from_numpy(np.stack(pixels))).to(device)
        return (model(X).argmax(dim=1).cpu() == y).float().mean().item()


def drawn_accuracy(models, n, seed, show):
    """Each model on the same test digits: as stored, drawn and prepared, drawn and resized."""
    stored, y, drawings = drawn_test_digits(n, seed)
    both = [prepare(png) for png in drawings]  # exactly what the server does per request
    prepared, resized = [p for p, _ in both], [r for _, r in both]
    rows = []
    for m in models:
        accs = [accuracy_on(m["model"], list(stored), y), accuracy_on(m["model"], prepared, y),
                accuracy_on(m["model"], resized, y)]
        rows.append([m["name"], m["checkpoint"], *(dl_utils.format_accuracy(a, n) for a in accs)])
    dl_utils.print_table(["model", "checkpoint", "test digits as stored", "drawn, prepared "
                          "(served)", "drawn, resized only"], rows)
    plot_drawings(drawings[:8], prepared[:8], resized[:8], show)
    return rows


def plot_drawings(drawings, prepared, resized, show):
    """What the pad sends, what the models see when prepared, and when merely resized."""
    fig, axes = dl_utils.image_grid(3, len(drawings), (1.4, 1.5))
    for col, (png, p, r) in enumerate(zip(drawings, prepared, resized)):
        axes[0, col].imshow(Image.open(io.BytesIO(png)).convert("L"), cmap="gray")
        axes[1, col].imshow(p, cmap="gray")
        axes[2, col].imshow(r, cmap="gray")
    for row, title in enumerate(("drawn on the pad", "prepared (served)", "resized only")):
        axes[row, 0].set_title(title, fontsize=8, loc="left")
    fig.suptitle("Test digits re-drawn like a canvas, and what a model gets to see")
    dl_utils.save_figure(fig, "09_drawn_digits.png", show)


# ---- 5. The self-check: the server, its own client, latency ----------------------------------
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


def bad_requests(url):
    """What the API answers to bad input: a status and one line, and it keeps serving."""
    blank = predict_request(png_bytes(Image.new("RGBA", (CANVAS, CANVAS), "white")))
    cases = [("not JSON", "/api/predict", b"{nope"),
             ("not an image", "/api/predict", json.dumps({"image": "data:image/png;base64,"
                                                          "aGVsbG8="}).encode()),
             ("a blank canvas", "/api/predict", blank),
             ("an unknown path", "/api/nothing", b"{}")]
    rows = [[what, *post(url + path, body)] for what, path, body in cases]
    dl_utils.print_table(["request", "status", "answer"],
                         [[w, s, a.get("error", "")[:60]] for w, s, a in rows])


def latency(url, drawings, requests):
    """Seconds per request, client side, one request at a time: p50 and p95."""
    times = []
    for i in range(requests):
        body = predict_request(drawings[i % len(drawings)])
        t0 = time.perf_counter()
        status, _ = post(f"{url}/api/predict", body)
        times.append(time.perf_counter() - t0)
        if status != 200:
            raise dl_utils.FriendlyError(f"the self-check's request {i} got HTTP {status}")
    q = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
    return 1000 * q[49], 1000 * q[94]


def self_check(models, args):
    """Start the server on a free port, be its client, stop it: nothing waits for a person."""
    server = make_server("127.0.0.1", 0, models, args.max_body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"Server started on {url} (a free port), for this check only.")
    try:
        _, y, drawings = drawn_test_digits(max(args.requests, 8), args.seed + 1)
        dl_utils.section("Drawn test digits through the API")
        ask_about_digits(url, drawings[:8], y[:8])
        dl_utils.section("Bad requests: a clear answer, and the server keeps serving")
        bad_requests(url)
        dl_utils.section(f"Latency: {args.requests} requests, one at a time, on loopback")
        p50, p95 = latency(url, drawings, args.requests)
        sizes = sorted(len(predict_request(png)) for png in drawings)
        print(f"p50 {p50:.1f} ms, p95 {p95:.1f} ms per request ({len(models)} models, each "
              "run twice: prepared and resized only); requests of "
              f"{sizes[len(sizes) // 2] / 1000:.1f} KB (median), limit {args.max_body / 1e6:g} MB")
    finally:
        server.shutdown()
        server.server_close()
    return 0


# ---- The lesson --------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--host", default=HOST,
                        help="address to listen on; 0.0.0.0 lets other computers connect "
                             "(default: %(default)s, this computer only)")
    parser.add_argument("--port", type=dl_utils.port_number, default=PORT,
                        help="TCP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--models-dir", default=str(dl_utils.MODELS_DIR),
                        help="serve every checkpoint in this folder (default: "
                             f"{dl_utils.display_path(dl_utils.MODELS_DIR)})")
    parser.add_argument("--self-check", action="store_true",
                        help="do not wait for a browser: measure drawn digits, call the API, "
                             "time it, stop (what make run does)")
    parser.add_argument("--requests", type=dl_utils.positive_int, default=SELF_CHECK_REQUESTS,
                        help="--self-check: requests to time (default: %(default)s)")
    parser.add_argument("--drawn", type=dl_utils.positive_int, default=DRAWN_DIGITS,
                        help="--self-check: test digits re-drawn to measure accuracy on "
                             "drawings (default: %(default)s)")
    parser.add_argument("--max-body", type=dl_utils.positive_int, default=MAX_BODY,
                        help="largest request body in bytes (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def is_loopback(host) -> bool:
    """True for addresses only this computer can reach (127.x.x.x, ::1, localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to an outside address
        return False


def serve(models, args):
    """Serve until Ctrl-C."""
    server = make_server(args.host, args.port, models, args.max_body, args.verbose)
    host, port = server.server_address[:2]
    if not is_loopback(args.host):
        print(f"WARNING: listening on {args.host}: anyone who can reach this computer over "
              "the network can use this server. Use the default 127.0.0.1 unless you mean it.")
    print(f"\nOpen http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ in a "
          "browser and draw a digit. Ctrl-C stops the server.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nStopped.")
    finally:
        server.server_close()
    return 0


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("The models, loaded once")
    device = dl_utils.get_device(args.device)
    models = load_models(args.models_dir, device)
    if models:
        dl_utils.print_table(["model", "checkpoint", "parameters"], [
            [m["name"], m["checkpoint"], f"{dl_utils.count_parameters(m['model']):,}"]
            for m in models])
    else:
        print(NO_MODEL_HINT)
    if not args.self_check:
        return serve(models, args)
    if models:
        dl_utils.section(f"Do drawn digits work? {args.drawn} test digits, re-drawn like a canvas")
        drawn_accuracy(models, args.drawn, args.seed, args.show)
    result = self_check(models, args)
    dl_utils.show_figures(args.show)
    return result


if __name__ == "__main__":
    dl_utils.run_main(main)
