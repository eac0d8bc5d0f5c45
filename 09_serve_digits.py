"""Lesson 9: serve the models: draw a digit in the browser and watch the networks read
it.

A trained model is only useful once something can ask it questions. This script puts
every checkpoint of the course behind a web server: a page to draw on, and an HTTP API
that any program can call. It teaches what serving adds to a model: preprocessing that
must match training exactly, inputs that cannot be trusted, latency, and concurrency.
The API is declared with FastAPI and served by uvicorn, the stack most model servers in
Python start from (_course/serving.py runs uvicorn; section 3 below says what FastAPI
does for us).

Run it:
    python 09_serve_digits.py               # then open http://127.0.0.1:8000 and draw
    python 09_serve_digits.py --port 8080   # another port
    python 09_serve_digits.py --self-check  # no browser: digits through the API
(`make run` uses --self-check: it starts the server on a free port, sends it test digits
drawn the way a canvas draws them, prints the answers and the latency, and stops.)
While it serves, http://127.0.0.1:8000/docs lists the API and lets you try it.

The API:
    POST /api/predict   {"image": "data:image/png;base64,..."}   (PNG or JPEG)
    ->  {"input": 28x28 grey levels 0-255,
         "models": [{"name", "checkpoint", "prediction", "probabilities"}],
         "resized_only": [{"name", "prediction"}]}
    GET /api/models     the models being served
    POST /api/drawings  {"image": ..., "digit": 0-9}: saved as a PNG, lesson 8's format
    GET /api/drawings   how many drawings of each digit are saved
    Errors: {"error": "..."} with 400 (bad JSON, body, image or Host), 413 (too large),
    422 (no digit in the image), 409 (drawings folder full), 404, 405; from uvicorn, in
    plain text: 400 (not HTTP at all) and 503 (too many clients connected at once).
Exercises: exercises/ex09_serving.py, checked by python exercises/check.py 09
"""

import io
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field

import dl_utils
from dl_utils import serving  # running the server (uvicorn), the self-check's client

RequestError = serving.RequestError

# ---- Settings: each has a flag (-h lists them) ----
HOST = "127.0.0.1"  # loopback: only programs on this computer can connect
PORT = 8000
MAX_BODY = 2_000_000  # bytes per request: a canvas PNG or a phone photo (JPEG) fits
# A posted image's pixel cap, read from its header before decoding: a drawing or a phone
# photo scaled for sending fits; a 62 KB PNG of 7000x7000 pixels would otherwise cost
# 600 MB of memory and seconds of work per request.
MAX_PIXELS = 4_000_000
CANVAS = dl_utils.CANVAS  # the page's drawing pad: 280x280 pixels (10x MNIST's 28)
# Where the page's "save as" buttons put labelled drawings: lesson 8's format, one
# subfolder per digit (08 and 08b read it)
DRAWINGS_DIR = dl_utils.OUTPUT_DIR / "data" / "my_drawings"
MAX_DRAWINGS = 2000  # the most that folder may hold: no client can fill the disk
SELF_CHECK_REQUESTS = 100  # requests timed by --self-check (make bench reports them)
DRAWN_DIGITS = 1000  # test digits re-drawn canvas-style to measure accuracy on drawings
SEED = 0
PAGE = dl_utils.ROOT / "web" / "draw.html"
NO_MODEL_HINT = (
    "No trained model in models/ yet: run python 03_train_mnist.py and python "
    "06_convolutional_network.py, then restart this server."
)


# ---- 1. The models: loaded once, at start-up -----------------------------------------
def load_models(folder: Path, device) -> list[dict]:
    """Every course checkpoint in `folder`, loaded once and put in eval mode.

    Loading takes milliseconds to seconds; a request should take milliseconds: load
    once, serve many. Only state_dict checkpoints are loaded (weights_only=True): the
    *_whole.pt pickles are never opened, *_interrupted.pt files are partial runs, and
    *_training.pt files are training states (for --resume), not models.
    """
    served = []
    for path in sorted(Path(folder).glob("*.pt")):
        if path.stem.endswith(("_whole", "_interrupted", "_training")):
            continue
        try:
            model, checkpoint = dl_utils.load_checkpoint(path, device=device)
        except dl_utils.FriendlyError as err:
            print(f"  skipped {dl_utils.display_path(path)}: {err}")
            continue
        # eval(): dropout off, batch norm on its running statistics. Forward passes then
        # change nothing in the model (answer_image still runs one at a time: see
        # there).
        model.eval()
        # (the checkpoint's folder and name, no full path: the API tells no one where
        # your files are)
        served.append({"name": checkpoint["model_class"], "model": model,
                       "checkpoint": f"{Path(folder).name}/{path.name}"})
    return served


# ---- 2. One preprocessing, shared with lesson 4 --------------------------------------
def prepare(image_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(prepared, resized_only): two 28x28 uint8 versions of the posted image.

    prepared is lesson 4's digit preparation (dl_utils' copy of it: invert dark ink
    on light paper, crop, scale into 20x20, centre by mass): the model sees a drawing
    the way it saw its training digits. resized_only merely shrinks the grey picture to
    28x28: what a server that forgot the preparation would feed the model. The gap
    between the two answers is "training/serving skew", the classic production bug:
    the code that prepares inputs at serving time differs from training's, and the
    model silently gets worse with no error anywhere.
    """
    try:
        grey = dl_utils.read_grayscale(io.BytesIO(image_bytes), name="the posted image",
                                       max_pixels=MAX_PIXELS)
    except dl_utils.ImageTooLarge as err:
        raise RequestError(413, str(err)) from err
    except dl_utils.FriendlyError as err:
        raise RequestError(400, str(err)) from err
    try:
        prepared = dl_utils.digit_from_gray(grey, "the posted image")
    except dl_utils.FriendlyError as err:  # a blank canvas
        raise RequestError(422, f"{err}: draw a digit first") from err
    # a writable copy
    resized = np.array(grey.resize((28, 28), Image.Resampling.BILINEAR))
    return prepared, resized


def predict(models, pixels: np.ndarray) -> list[dict]:
    """Each model's prediction and ten probabilities for one 28x28 uint8 image.

    torch.inference_mode() is torch.no_grad() and more: tensors made inside it can never
    join autograd, which lets PyTorch skip some bookkeeping. For serving it is the one
    to use. (Eval-mode models only read their weights, so threads could share them; we
    still run one request at a time: see INFERENCE.)
    """
    answers = []
    # [1, 1, 28, 28], once for all
    X = dl_utils.normalize(torch.from_numpy(pixels)[None])
    with torch.inference_mode():
        for served in models:
            model = served["model"]
            probs = torch.softmax(model(X.to(next(model.parameters()).device)), dim=1)[
                0
            ].cpu()
            answers.append({"name": served["name"], "checkpoint": served["checkpoint"],
                            "prediction": int(probs.argmax()),
                            "probabilities": [round(p, 6) for p in probs.tolist()]})
    return answers


# One request at a time is decoded and run through the models, whichever thread answers
# it: on Apple's MPS, two threads running tensor operations at once can crash the
# process (pytorch/pytorch#197805), and one 4-megapixel decode at a time bounds memory.
# Speed is not the reason: one 28x28 image is too little work to keep several cores busy
# (torch's intra-op threads help a CNN a little and SimpleNN not at all), so a CPU
# serves more requests per second by batching them (exercise 09.3 measures the gain).
INFERENCE = threading.Lock()


def answer_image(models, image_bytes: bytes) -> dict:
    """The whole API answer for one posted image."""
    with INFERENCE:
        prepared, resized = prepare(image_bytes)
        skew, answers = predict(models, resized), predict(models, prepared)
    return {"input": prepared.tolist(), "models": answers,
            "resized_only": [{"name": a["name"], "checkpoint": a["checkpoint"],
                              "prediction": a["prediction"]} for a in skew],
            "hint": "" if models else NO_MODEL_HINT}


# ---- 3. The API, declared with FastAPI -----------------------------------------------
class DigitRequest(BaseModel):
    """The body of POST /api/predict. FastAPI reads the JSON, checks it against this
    class (a JSON object with a string "image") and hands the endpoint a DigitRequest;
    anything else never reaches our code: bad JSON, a list, a number for "image"."""
    image: str = Field(description="the drawing as a data URL (PNG or JPEG), as a "
                                   "canvas's toDataURL() gives it",
                       examples=["data:image/png;base64,iVBORw0KGgo..."])


class LabelledDrawing(DigitRequest):
    """The body of POST /api/drawings: the drawing, and the digit it shows (an integer 0
    to 9; strict: "7", 7.0 or true are refused, not guessed at)."""
    digit: int = Field(ge=0, le=9, strict=True, description="the digit drawn")


def saved_counts(folder) -> list[int]:
    """How many drawings of each digit the folder holds."""
    return [len(list((Path(folder) / str(d)).glob("*.png"))) for d in range(10)]


def save_drawing(folder, image_bytes: bytes, digit: int) -> dict:
    """Check the drawing as /api/predict does (a bad image: 400 or 413; a blank pad:
    422; nothing saved), then write it re-encoded as a grey PNG to folder/<digit>/:
    the bytes and the file name are ours, never the client's, and the file appears
    whole or not at all (dl_utils.atomic_path). Lesson 8b fine-tunes on the folder."""
    with INFERENCE:  # one decode at a time; also: two saves never pick the same name
        prepare(image_bytes)
        grey = dl_utils.read_grayscale(io.BytesIO(image_bytes), max_pixels=MAX_PIXELS)
        counts = saved_counts(folder)
        if sum(counts) >= MAX_DRAWINGS:
            raise RequestError(
                409, f"the folder already holds {MAX_DRAWINGS:,} drawings"
            )
        path = (
            Path(folder)
            / str(digit)
            / f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns()}.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with dl_utils.atomic_path(path) as tmp:
            grey.save(tmp, format="PNG")
    counts[digit] += 1
    return {"saved": f"{Path(folder).name}/{digit}/{path.name}", "counts": counts}


def make_app(models, max_body=MAX_BODY, drawings=DRAWINGS_DIR) -> FastAPI:
    """The web API: two pages, four endpoints, one shape of error.

    FastAPI writes what 09 used to write by hand: routing, 404/405 with an Allow header,
    HEAD, JSON in and out, checking the body against DigitRequest, a body limit checked
    before and while reading (max_body_size: a 413), and a /docs page that lists the API
    and lets you try it (FastAPIOffline: its scripts come with the package, not from a
    CDN, so it works offline). The server (serving.py) checks the Host, the framing and
    the declared size first. Ours: the pixel cap and PNG/JPEG-only decoding (prepare),
    one inference at a time (INFERENCE). Waiting requests hold only their body: up to 40
    in FastAPI's thread pool, the rest in the event loop; beyond
    serving.MAX_CONNECTIONS, uvicorn answers 503.
    """
    app = FastAPIOffline(title="Deep Learning Basics, lesson 9: digit reader",
                         max_body_size=max_body, redoc_url=None)
    page = PAGE.read_bytes()  # read once; no path is ever mapped to a file on disk

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/index.html", methods=["GET", "HEAD"], include_in_schema=False)
    def drawing_page():
        return Response(page, media_type="text/html; charset=utf-8")

    @app.head("/api/models", include_in_schema=False)  # HEAD: GET's headers, no body
    @app.get("/api/models")
    def served_models():
        """The models being served."""
        return {
            "models": [
                {"name": m["name"], "checkpoint": m["checkpoint"]} for m in models
            ],
            "hint": "" if models else NO_MODEL_HINT,
        }

    @app.post("/api/predict")
    def read_digit(body: DigitRequest):
        """Every model's reading of the posted drawing (and what it says if only
        resized).

        A plain `def`, not `async def`: FastAPI then runs it in its thread pool, off the
        event loop, which keeps accepting and reading other requests meanwhile. An
        `async def` doing a forward pass would stall every other client while it runs.
        """
        return answer_image(models, serving.decode_data_url(body.image))

    @app.get("/api/drawings")
    def drawing_counts():
        """How many labelled drawings of each digit are saved."""
        return {"folder": Path(drawings).name, "counts": saved_counts(drawings)}

    @app.post("/api/drawings")
    def save_labelled(body: LabelledDrawing):
        """Save the drawing under the digit it shows (lesson 8's folder format)."""
        return save_drawing(drawings, serving.decode_data_url(body.image), body.digit)

    image = '"image": "data:image/png;base64,..."'
    serving.answer_errors(app, {"/api/predict": f"{{{image}}}",
                                "/api/drawings": f'{{{image}, "digit": 0-9}}'})
    return app


# ---- 4. Do drawn digits work? Measured on test digits re-drawn like a canvas ---------
def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_test_digits(n, seed):
    """n test digits (the first n), each re-drawn like a canvas, as PNG files in memory.

    dl_utils.draw_like_a_canvas (lesson 8 made its folder with it too) draws as a pen
    does: solid strokes of any thickness, any size, anywhere on the 280x280 pad, dark on
    light, one in five light on dark."""
    _, _, test_X, test_y = dl_utils.load_mnist_tensors()
    rng = np.random.default_rng(seed)
    drawings = [
        png_bytes(dl_utils.draw_like_a_canvas(test_X[i].numpy(), rng)) for i in range(n)
    ]
    return test_X[:n].numpy(), test_y[:n], drawings


def accuracy_on(model, pixels: np.ndarray, y, normalized=True) -> float:
    """Accuracy of one model on a stack of 28x28 uint8 images, in one batch (normalized
    as in training, or merely scaled to [0, 1]: what forgetting normalization
    serves)."""
    device = next(model.parameters()).device
    X = torch.from_numpy(np.stack(pixels))
    X = dl_utils.normalize(X) if normalized else (X.float() / 255).unsqueeze(1)
    with torch.inference_mode():
        return (model(X.to(device)).argmax(dim=1).cpu() == y).float().mean().item()


def drawn_accuracy(models, n, seed, show):
    """Each model on the same test digits: as stored, drawn and prepared, drawn and
    resized."""
    stored, y, drawings = drawn_test_digits(n, seed)
    # exactly what the server does per request
    both = [prepare(png) for png in drawings]
    prepared, resized = [p for p, _ in both], [r for _, r in both]
    rows = []
    for m in models:
        accs = [
            accuracy_on(m["model"], list(stored), y),
            accuracy_on(m["model"], prepared, y),
            accuracy_on(m["model"], resized, y),
        ]
        rows.append(
            [
                m["name"],
                m["checkpoint"],
                *(dl_utils.format_accuracy(a, n) for a in accs),
            ]
        )
    dl_utils.print_table(
        [
            "model",
            "checkpoint",
            "test digits as stored",
            "drawn, prepared (served)",
            "drawn, resized only",
        ],
        rows,
    )
    plot_drawings(drawings[:8], prepared[:8], resized[:8], show)
    return prepared, resized, y


def skew_by_step(model, prepared, resized, y):
    """Where the skew comes from: lesson 4's preparation added one step at a time, on
    drawings dark on light (as the pad draws) and light on dark, apart."""
    dark = np.array([np.median(np.concatenate([r[0], r[-1], r[:, 0], r[:, -1]])) > 127
                     for r in resized])  # the same test digit_from_gray makes
    inverted = [255 - r if d else r for r, d in zip(resized, dark)]
    steps = [
        ("resized only", resized, True),
        ("+ inverted to light ink on black", inverted, True),
        ("+ cropped, scaled, centred: served", prepared, True),
        ("served, but not normalized", prepared, False),
    ]
    rows, on_dark = [], []  # on_dark: each step's accuracy on the pad's own polarity
    for name, pixels, normalized in steps:
        row = [name]
        for group in (dark, ~dark):
            picked = [p for p, g in zip(pixels, group) if g]
            acc = accuracy_on(model, picked, y[torch.from_numpy(group)], normalized) \
                if picked else float("nan")
            row.append(dl_utils.format_accuracy(acc, len(picked)) if picked else "none")
            on_dark += [acc] if group is dark else []
        rows.append(row)
    dl_utils.print_table(["preparation", f"dark on light ({dark.sum()})",
                          f"light on dark ({(~dark).sum()})"], rows)
    if dark.any():
        gains = [100 * (b - a) for a, b in zip(on_dark, on_dark[1:3])]
        print(f"On drawings dark on light, inverting is worth {gains[0]:+.1f} points, "
              f"cropping and centring {gains[1]:+.1f}; skipping normalization "
              f"{100 * (on_dark[3] - on_dark[2]):+.1f}.")


def plot_drawings(drawings, prepared, resized, show):
    """What the pad sends, what the models see when prepared, and when merely
    resized."""
    fig, axes = dl_utils.image_grid(3, len(drawings), (1.4, 1.5))
    for col, (png, p, r) in enumerate(zip(drawings, prepared, resized)):
        axes[0, col].imshow(Image.open(io.BytesIO(png)).convert("L"), cmap="gray")
        axes[1, col].imshow(p, cmap="gray")
        axes[2, col].imshow(r, cmap="gray")
    for row, title in enumerate(
        ("drawn on the pad", "prepared (served)", "resized only")
    ):
        axes[row, 0].set_title(title, fontsize=8, loc="left")
    fig.suptitle("Test digits re-drawn like a canvas, and what a model gets to see")
    dl_utils.save_figure(fig, "09_drawn_digits.png", show)


# ---- 5. The self-check: the server, its own client, latency --------------------------
def latency(url, drawings, requests, keep_alive):
    """Milliseconds per request, client side, one request at a time: (p50, p95). Either
    on one kept-alive connection, as the drawing page sends its drawings, or each on a
    new connection (what a one-off client such as curl pays)."""
    times = []
    with serving.Client(url, keep_alive) as client:
        for i in range(requests):
            body = serving.predict_request(drawings[i % len(drawings)])
            t0 = time.perf_counter()
            status, _ = client.post("/api/predict", body)
            times.append(time.perf_counter() - t0)
            if status != 200:
                raise dl_utils.FriendlyError(
                    f"the self-check's request {i} got HTTP {status}"
                )
    q = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
    return 1000 * q[49], 1000 * q[94]


def self_check(models, args):
    """Start the server on a free port, be its client, stop it: nothing waits for a
    person."""
    with serving.running(make_app(models, args.max_body)) as url:
        print(f"Server started on {url} (a free port), for this check only.")
        _, y, drawings = drawn_test_digits(max(args.requests, 8), args.seed + 1)
        dl_utils.section("Drawn test digits through the API")
        serving.ask_about_digits(url, drawings[:8], y[:8])
        dl_utils.section("Bad requests: a clear answer, and the server keeps serving")
        serving.bad_requests(
            url, png_bytes(Image.new("RGBA", (CANVAS, CANVAS), "white"))
        )
        dl_utils.section(
            f"Latency: {args.requests} requests, one at a time, on loopback"
        )
        p50, p95 = latency(url, drawings, args.requests, keep_alive=True)
        new50, new95 = latency(url, drawings, args.requests, keep_alive=False)
        dl_utils.print_table(
            ["connection", "p50 ms", "p95 ms"],
            [
                ["one kept alive (as the page)", f"{p50:.1f}", f"{p95:.1f}"],
                ["a new one per request", f"{new50:.1f}", f"{new95:.1f}"],
            ],
        )
        sizes = sorted(len(serving.predict_request(png)) for png in drawings)
        print(
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms per request on one connection "
            f"({len(models)} models, each run twice: prepared and resized only); "
            "requests "
            f"of {sizes[len(sizes) // 2] / 1000:.1f} KB (median), limit "
            f"{args.max_body / 1e6:g} MB"
        )
    return 0


# ---- The lesson ----------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument(
        "--host",
        default=HOST,
        help="address to listen on; 0.0.0.0 lets other computers connect "
        "(default: %(default)s, this computer only)",
    )
    parser.add_argument("--port", type=dl_utils.port_number, default=PORT,
                        help="TCP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--models-dir", default=str(dl_utils.MODELS_DIR),
                        help="serve every checkpoint in this folder (default: "
                             f"{dl_utils.display_path(dl_utils.MODELS_DIR)})")
    parser.add_argument("--drawings-dir", default=str(DRAWINGS_DIR),
                        help="where the page saves labelled drawings (default: "
                             f"{dl_utils.display_path(DRAWINGS_DIR)})")
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="do not wait for a browser: measure drawn digits, call the API, "
        "time it, stop (what make run does)",
    )
    parser.add_argument(
        "--requests",
        type=dl_utils.positive_int,
        default=SELF_CHECK_REQUESTS,
        help="--self-check: requests to time (default: %(default)s)",
    )
    parser.add_argument(
        "--drawn",
        type=dl_utils.positive_int,
        default=DRAWN_DIGITS,
        help="--self-check: test digits re-drawn to measure accuracy on "
        "drawings (default: %(default)s)",
    )
    parser.add_argument("--max-body", type=dl_utils.positive_int, default=MAX_BODY,
                        help="largest request body in bytes (default: %(default)s)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log every request (uvicorn's access log)",
    )
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def serve(models, args):
    """Serve until Ctrl-C."""
    if not serving.is_loopback(args.host):
        print(
            f"WARNING: listening on {args.host}: anyone who can reach this computer "
            "over "
            "the network can use this server. Use the default 127.0.0.1 unless you "
            "mean it."
        )
    return serving.serve_until_ctrl_c(
        make_app(models, args.max_body, args.drawings_dir),
        args.host,
        args.port,
        args.verbose,
    )


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
        dl_utils.section(
            f"Do drawn digits work? {args.drawn} test digits, re-drawn like a canvas"
        )
        prepared, resized, y = drawn_accuracy(models, args.drawn, args.seed, args.show)
        dl_utils.section(
            f"Where the skew comes from: {models[0]['checkpoint']}, one step at a time"
        )
        skew_by_step(models[0]["model"], prepared, resized, y)
    result = self_check(models, args)
    dl_utils.show_figures(args.show)
    return result


if __name__ == "__main__":
    dl_utils.run_main(main)
