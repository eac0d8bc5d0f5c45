"""Lesson 09: the API answers right, refuses bad requests with the right status,
survives, and prints its address once it answers.

The API's answers are checked through FastAPI's TestClient (no network); what happens on
the wire (garbled requests, slow and departing clients, 200 at once, Ctrl-C) against the
real server, uvicorn, on a free port.
"""

import base64
import http.client
import json
import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import benchmark_reads, lesson, run_script
from PIL import Image

import dl_utils
from _course import serving


def m09():
    return lesson("09_serve_digits")


@pytest.fixture(scope="module")
def models(served_models_dir):
    return m09().load_models(served_models_dir, "cpu")


@pytest.fixture(scope="module")
def client(models):
    from fastapi.testclient import TestClient
    return TestClient(m09().make_app(models))


@pytest.fixture(scope="module")
def server(models):
    """The real server (uvicorn) on a free port; the port."""
    with serving.running(m09().make_app(models)) as url:
        yield int(url.rsplit(":", 1)[1])


def request(port, method, path, body=None, headers=None):
    """One raw HTTP request; (status, JSON or text answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(data) if "json" in kind else data.decode())


def post(client, body, content_type="application/json"):
    """POST a body to /api/predict through the TestClient; (status, JSON answer)."""
    response = client.post("/api/predict", content=body,
                           headers={"Content-Type": content_type})
    return response.status_code, response.json()


def data_url(image: Image.Image, fmt="PNG") -> str:
    import io
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/{fmt.lower()};base64," + encoded


def test_only_state_dict_checkpoints_are_served(served_models_dir, models):
    assert [m["checkpoint"].endswith("mlp.pt") for m in models] == [True]  # no _whole
    assert (served_models_dir / "mlp_whole.pt").exists()
    assert not models[0]["model"].training  # eval mode, once, at load


def test_drawn_test_digits_are_predicted_as_the_model_predicts_them(client, models):
    _, y, drawings = m09().drawn_test_digits(40, seed=3)
    model = models[0]["model"]
    right = 0
    for png, label in zip(drawings, y.tolist()):
        status, answer = post(client, serving.predict_request(png))
        assert status == 200
        pixels = np.array(answer["input"], dtype=np.uint8)
        assert pixels.shape == (28, 28)
        with torch.no_grad():  # the same numbers, computed here from the returned input
            X = dl_utils.normalize(torch.from_numpy(pixels)[None])
            probs = torch.softmax(model(X), 1)
        (served,) = answer["models"]
        assert served["prediction"] == int(probs.argmax())
        assert served["probabilities"] == pytest.approx(probs[0].tolist(), abs=1e-5)
        right += served["prediction"] == label
    assert right >= 32  # 80% of 40 drawn digits, from an MLP trained for 2 epochs


def test_jpeg_and_light_on_dark_drawings_work(client):
    _, _, test_X, test_y = dl_utils.load_mnist_tensors()
    big = Image.fromarray(test_X[0].numpy()).resize((200, 200))  # light ink on black
    for image, fmt in ((big, "PNG"), (big.convert("RGB"), "JPEG")):
        status, answer = post(client, json.dumps({"image": data_url(image, fmt)}))
        assert status == 200 and answer["models"][0]["prediction"] == int(test_y[0])


@pytest.mark.parametrize("method, path, body, headers, status", [
    ("POST", "/api/predict", b"{not json", {}, 400),
    ("POST", "/api/predict", b'["a list"]', {}, 400),
    ("POST", "/api/predict", b'{"image": 5}', {}, 400),
    ("POST", "/api/predict", b'{"picture": "data:image/png;base64,aGVsbG8="}', {}, 400),
    ("POST", "/api/predict", b'{"image": "http://example.com/a.png"}', {}, 400),
    ("POST", "/api/predict", b'{"image": "data:image/png;base64,@@@"}', {}, 400),
    ("POST", "/api/predict", b'{"image": "data:image/png;base64,aGVsbG8="}', {}, 400),
    ("POST", "/api/predict", b"\xff\xfe", {}, 400),
    ("POST", "/api/predict", b'{"image": "\xff\xfe"}', {}, 400),  # not UTF-8
    ("POST", "/api/predict", b"[" * 100_000 + b"]" * 100_000, {},
     400),  # nested 100,000 deep
    ("POST", "/api/predict", b'{"image": ' + b"9" * 5000 + b"}", {},
     400),  # 5,000 digits
    ("POST", "/api/predict", b'{"image": "data:image/png;base64,aGVsbG8="}',
     {"Content-Type": "text/plain"},
     400),  # JSON only as JSON: no cross-site form posts
    ("GET", "/api/predict", None, {}, 405),
    ("DELETE", "/", None, {}, 405),
    ("GET", "/../../etc/passwd", None, {}, 404),
    ("GET", "/09_serve_digits.py", None, {}, 404),
    ("POST", "/api/other", b"{}", {}, 404),
])
def test_bad_requests_get_their_status_and_one_line(client, method, path, body, headers,
                                                    status):
    headers = {"Content-Type": "application/json", **headers}
    response = client.request(method, path, content=body, headers=headers)
    answer = response.json()
    assert response.status_code == status and isinstance(answer["error"], str), answer
    assert "\n" not in answer["error"] and len(answer["error"]) < 300
    if status == 405:
        assert response.headers["Allow"]


def test_head_the_page_and_the_api_description(client):
    head = client.head("/api/models")
    assert head.status_code == 200 and head.content == b""
    status, page = client.get("/").status_code, client.get("/index.html").text
    assert status == 200 and "<canvas" in page and "/api/predict" in page
    assert "http://" not in page and "https://" not in page  # no CDN: works offline
    schema = client.get("/openapi.json").json()  # what /docs shows: the typed request
    assert "image" in schema["components"]["schemas"]["DigitRequest"]["properties"]


def test_blank_canvas_is_422(client):
    blank = Image.new("RGBA", (280, 280), "white")
    status, answer = post(client, json.dumps({"image": data_url(blank)}))
    assert status == 422 and "draw a digit" in answer["error"]


def test_a_huge_image_in_a_small_body_is_413(client):
    """7000x7000 pixels fit in a 60 KB PNG; the header says so before anything is
    decoded."""
    image = Image.new("L", (7000, 7000), 255)
    image.paste(0, (3000, 3000, 4000, 4000))
    status, answer = post(client, json.dumps({"image": data_url(image)}))
    assert status == 413 and "megapixels" in answer["error"]


def test_an_eps_image_is_never_decoded(client, tmp_path, monkeypatch):
    """Pillow would hand EPS content to Ghostscript: a fake `gs` on PATH proves it is
    never started, whether the file is posted, given to 04 --image, or read by 08."""
    marker = tmp_path / "gs_ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
    status, answer = post(client, json.dumps(
        {"image": "data:image/png;base64," + base64.b64encode(eps).decode()}))
    assert status == 400 and "not a PNG or JPEG" in answer["error"]
    (tmp_path / "digit.png").write_bytes(eps)  # EPS under a .png name
    with pytest.raises(dl_utils.FriendlyError, match="not a PNG or JPEG"):
        dl_utils.read_grayscale(tmp_path / "digit.png")
    assert not marker.exists()


# ---- On the wire: the real server ----------------------------------------------------
def raw(port, data: bytes, timeout=30) -> bytes:
    """Bytes straight onto a socket; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_garbled_requests_are_4xx_and_the_server_keeps_serving(server, capfd):
    over = raw(server, b"POST /api/predict HTTP/1.1\r\nHost: [::1]\r\n"
                       b"Content-Length: 3000000\r\n\r\n"
                       + b"x" * 1000)  # answered before the body is read
    assert over.startswith(b"HTTP/1.1 413 ")
    superscript = ("POST /api/predict HTTP/1.1\r\nHost: [::1]\r\nContent-Length: ²"
                   "\r\n\r\n{}").encode("latin-1")
    endless = (b"GET / HTTP/1.1\r\nHost: [::1]\r\nX-Long: " + b"a" * 1_000_000
               + b"\r\n\r\n")
    for garbage in (b"\x00\x01garbage\r\n\r\n",  # not even HTTP
                    superscript, endless):
        try:
            answer = raw(server, garbage)
        except ConnectionResetError:  # refused while we were still sending: also fine
            continue
        assert answer.startswith(b"HTTP/1.1 400 "), garbage[:30]
    head = raw(server, b"HEAD /api/models HTTP/1.1\r\nHost: [::1]\r\n"
                       b"Connection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # no body
    assert request(server, "GET", "/api/models")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_slow_clients_are_dropped_and_never_block_others(server, monkeypatch):
    """Clients that send a byte now and then (headers, or a body that stops short) hold
    no thread, do not delay anyone, and are closed at serving.REQUEST_TIMEOUT."""
    monkeypatch.setattr(serving, "REQUEST_TIMEOUT", 2)  # new connections: 2 s, not 10
    started = time.monotonic()
    slow = [socket.create_connection(("127.0.0.1", server)) for _ in range(20)]
    for i, sock in enumerate(slow):
        start = b"POST /api/predict HTTP/1.1\r\nHost: [::1]\r\n"
        sock.sendall(start if i % 2 else start + b"Content-Length: 100\r\n\r\n{")
    t0 = time.monotonic()
    assert request(server, "GET", "/api/models")[0] == 200  # not behind the slow ones
    assert time.monotonic() - t0 < 2
    dropped = 0
    for sock in slow:  # drip a byte a second: the deadline is for the whole request
        sock.settimeout(1)
        while time.monotonic() - started < serving.REQUEST_TIMEOUT + 10:
            try:
                sock.sendall(b"x")
                if sock.recv(100) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        dropped += time.monotonic() - started < serving.REQUEST_TIMEOUT + 10
        sock.close()
    assert dropped == 20


def test_a_client_that_leaves_early_prints_no_traceback(server, capfd):
    png = serving.predict_request(b"not really")
    for _ in range(5):  # send a request, then close before the answer is read
        with socket.create_connection(("127.0.0.1", server)) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: [::1]\r\nContent-Type: "
                         b"application/json\r\nContent-Length: "
                         + str(len(png) + 100).encode() + b"\r\n\r\n" + png)
    _, y, drawings = m09().drawn_test_digits(5, seed=4)
    for png in drawings:  # a whole valid request, then gone before the answer
        with socket.create_connection(("127.0.0.1", server)) as sock:
            body = serving.predict_request(png)
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: [::1]\r\nContent-Type: "
                         b"application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert request(server, "GET", "/api/models")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_200_requests_at_once_are_all_answered_right(server):
    from concurrent.futures import ThreadPoolExecutor
    _, y, drawings = m09().drawn_test_digits(10, seed=5)
    bodies = [serving.predict_request(png) for png in drawings]

    def ask(i):
        status, answer = request(server, "POST", "/api/predict", bodies[i % 10],
                                 {"Content-Type": "application/json"})
        return status, answer["models"][0]["prediction"]

    with ThreadPoolExecutor(max_workers=200) as pool:  # 200 connections open at once
        answers = list(pool.map(ask, range(200)))
    assert [status for status, _ in answers] == [200] * 200
    # the same image, the same answer
    assert all(answers[i][1] == answers[i % 10][1] for i in range(200))


def test_too_many_connections_get_503_not_a_crash(models):
    app = m09().make_app(models)
    with serving.running(app, max_connections=3) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.2)
        assert raw(port, b"GET /api/models HTTP/1.1\r\nHost: [::1]\r\n\r\n").startswith(
            b"HTTP/1.1 503 ")
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert request(port, "GET", "/api/models")[0] == 200


def test_port_in_use_is_one_clear_line(server):
    result = run_script("09_serve_digits.py", "--port", server, inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot listen on" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_self_check_runs_and_stops(served_models_dir):
    result = run_script("09_serve_digits.py", "--self-check", "--models-dir",
                        served_models_dir, "--requests", "10", "--drawn", "50",
                        inline=True)
    assert result.returncode == 0, result.stderr
    benchmark_reads("09_serve_digits.py", result.stdout)
    assert "p95" in result.stdout and "drawn, prepared (served)" in result.stdout
    skew = result.stdout.split("Where the skew comes from")[1]  # one step at a time
    for step in ("resized only", "+ inverted", "+ cropped, scaled, centred",
                 "not normalized"):
        assert step in skew
    found = re.search(r"inverting is worth ([+-][\d.]+) points", skew)
    assert float(found.group(1)) > 20  # the pad: dark on light; MNIST: light on black


def test_no_model_yet_says_which_lesson_to_run(tmp_path):
    result = run_script("09_serve_digits.py", "--self-check", "--models-dir", tmp_path,
                        "--requests", "3", inline=True)
    assert result.returncode == 0, result.stderr
    assert "run python 03_train_mnist.py" in result.stdout


def sigint_as_in_a_terminal():
    """Ctrl-C as from a terminal, even when the tests were started in the background
    (a shell then starts them with SIGINT ignored, and children inherit that)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_09(served_models_dir):
    """Lesson 9 serving on a free port, as from a terminal; (process, its port), read
    from the "Open http://..." line the moment it appears."""
    import subprocess
    import sys

    from conftest import ROOT
    command = [sys.executable, str(ROOT / "09_serve_digits.py"), "--port", "0",
               "--models-dir", str(served_models_dir)]
    restore = sigint_as_in_a_terminal if os.name == "posix" else None
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=restore)
    deadline = time.time() + 120
    line = ""
    while "Ctrl-C stops" not in line and time.time() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
    if "Ctrl-C stops" not in line:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=30))
    # the default: this computer only (127.0.0.1), as the address says
    return proc, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def test_the_address_is_printed_once_the_server_answers(served_models_dir):
    """A client that connects the moment "Open http://..." appears is answered, never
    refused (the line once came before the socket listened)."""
    proc, port = start_09(served_models_dir)
    try:
        answers = [request(port, "GET", "/api/models")[0] for _ in range(3)]  # no retry
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert answers == [200, 200, 200]


def test_ctrl_c_stops_the_server_cleanly(served_models_dir):
    import signal

    proc, port = start_09(served_models_dir)
    assert request(port, "GET", "/api/models")[0] == 200  # (uvicorn's Ctrl-C handler)
    os.kill(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Stopped." in rest, (rest, err)
    assert "Traceback" not in err, err
    assert serving.is_loopback("127.0.0.1") and not serving.is_loopback("0.0.0.0")


def test_unusable_checkpoints_are_skipped_with_one_line_each(served_models_dir,
                                                             tmp_path, capsys):
    import shutil
    shutil.copy(served_models_dir / "mlp.pt", tmp_path / "good.pt")
    good = torch.load(tmp_path / "good.pt", weights_only=True)
    torch.save({**good, "model_kwargs": {"width": 3}}, tmp_path / "bad_kwargs.pt")
    torch.save({**good, "model_class": "DistributedDataParallel",
                "model_module": "torch.nn.parallel.distributed"}, tmp_path / "ddp.pt")
    models = m09().load_models(tmp_path, "cpu")
    assert [Path(m["checkpoint"]).name for m in models] == ["good.pt"]
    out = capsys.readouterr().out
    assert "skipped" in out and "bad_kwargs.pt" in out and "cannot be built" in out
    assert "ddp.pt" in out and "unknown model module" in out and "Traceback" not in out


# ---- Issue 28: real use of the server ------------------------------------------------
def test_kept_alive_connections_have_nagle_off(models):
    """Without TCP_NODELAY every answer on a kept-alive connection waited ~40 ms for the
    client's delayed ACK (the drawing page reuses its connection). Judged on the sockets
    the server accepted, not on a timing."""
    import threading
    server, sock = serving.make_server(m09().make_app(models), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
        with serving.Client(serving.url_of(sock)) as client:
            for _ in range(3):  # three requests on one connection
                assert client.post("/api/predict", b"{}")[0] == 400
            accepted = [c.transport.get_extra_info("socket")
                        for c in server.server_state.connections]
            assert len(accepted) == 1
            assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("host, status", [("attacker.example", 400),
                                          ("127.0.0.1.evil.com", 400),
                                          ("localhost", 200), ("[::1]:8000", 200),
                                          ("127.0.0.1:1", 200)])
def test_on_loopback_only_requests_for_this_computer_are_answered(server, host, status):
    answer = raw(server, f"GET /api/models HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    if status == 400:  # one line in the API's shape, the connection closed (raw ended)
        assert b"connection: close" in answer.lower()
        assert b'{"error":"this server answers' in answer


def test_a_server_for_the_network_takes_any_host_name():
    guard = serving.RequestGuard(None, 100, loopback_only=False)
    assert guard.problem({"headers": [(b"host", b"my-laptop.local:8000")]}) is None
    loopback = serving.RequestGuard(None, 100, loopback_only=True)
    assert loopback.problem({"headers": [(b"host", b"my-laptop.local:8000")]})[0] == 400


def test_a_smuggled_request_behind_both_framings_is_never_answered(server):
    answer = raw(server, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                         b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert answer.count(b"HTTP/1.1") == 1, answer
    assert b"Transfer-Encoding" in answer and b"connection: close" in answer.lower()


def test_a_body_over_the_limit_is_one_json_line_however_it_is_sent(server):
    declared = raw(server, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Length: 3000000\r\n\r\n{")
    assert declared.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in declared.lower()
    assert (b'{"error":"the body has 3,000,000 bytes; the limit is 2,000,000"}'
            in declared)


def test_models_are_listed_without_where_they_live_on_disk(client, served_models_dir):
    listed = client.get("/api/models").json()["models"]
    folder = served_models_dir.name  # "folder/file.pt": models/cnn.pt when run by hand
    assert listed, listed
    assert all(m["checkpoint"].startswith(f"{folder}/") for m in listed), listed
    assert not any(os.path.isabs(m["checkpoint"]) for m in listed)


def test_the_docs_page_needs_no_internet(client):
    page = client.get("/docs").text
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert scripts
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))]
    for asset in scripts:
        assert client.get(asset).status_code == 200, asset


def test_a_chunked_body_over_the_limit_is_json_and_closes_its_connection(server,
                                                                         client):
    """Counted while reading (no Content-Length to refuse it by): a JSON 413 with
    Connection: close, since the rest of the body was never read."""
    def chunks():
        for _ in range(21):
            yield b"x" * 100_000  # 2.1 MB, sent chunked (no length known in advance)
    answer = client.post("/api/predict", content=chunks(),
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "error" in answer.json()
    sent = []

    async def send(message):
        sent.append(message)
    import asyncio
    asyncio.run(serving.send_closing_on_413(send)(
        {"type": "http.response.start", "status": 413, "headers": []}))
    assert (b"connection", b"close") in sent[0]["headers"]
    # on the wire: the server closes (a FIN, or a reset when bytes were left unread),
    # well before its 10 s request deadline would (a timeout here fails the test)
    assert serving.REQUEST_TIMEOUT >= 10
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(21):
                sock.sendall(b"186a0\r\n" + b"x" * 100_000 + b"\r\n")
            while sock.recv(65536):
                pass  # until the server closes
        except ConnectionResetError:
            pass  # closed with bytes unread: the kernel resets instead


# ---- labelled drawings: the page's "save as", in lesson 8's folder format ------------
@pytest.fixture()
def saver(models, tmp_path):
    """A TestClient whose app saves drawings into its own folder; (client, folder)."""
    from fastapi.testclient import TestClient
    folder = tmp_path / "my_drawings"
    return TestClient(m09().make_app(models, drawings=folder)), folder


def drawing_of(index, seed=0) -> str:
    """MNIST test digit `index`, drawn like the pad draws, as a data URL."""
    _, _, X, _ = dl_utils.load_mnist_tensors()
    rng = np.random.default_rng(seed)
    return data_url(dl_utils.draw_like_a_canvas(X[index].numpy(), rng))


def test_a_labelled_drawing_is_saved_as_a_grey_png_in_lesson_8s_format(saver):
    client, folder = saver
    assert client.get("/api/drawings").json() == {"folder": "my_drawings",
                                                  "counts": [0] * 10}
    answer = client.post("/api/drawings", json={"image": drawing_of(0), "digit": 7})
    assert answer.status_code == 200, answer.text
    saved = answer.json()
    files = list((folder / "7").glob("*.png"))
    assert len(files) == 1 and saved["saved"] == f"my_drawings/7/{files[0].name}"
    assert saved["counts"] == [0] * 7 + [1] + [0] * 2
    assert Image.open(files[0]).mode == "L" and Image.open(files[0]).size == (280, 280)
    assert not list(folder.rglob("*.tmp*"))  # written atomically, nothing left over
    assert client.get("/api/drawings").json()["counts"][7] == 1


@pytest.mark.parametrize("body, message", [
    ({"image": "X", "digit": "7"}, "digit"), ({"digit": 3}, "image"),
    ({"image": "X", "digit": 10}, "digit"), ({"image": "X", "digit": -1}, "digit"),
    ({"image": "X", "digit": True}, "digit"), ({"image": "X", "digit": 2.5}, "digit"),
    ({"image": "X"}, "digit")])
def test_a_bad_label_is_400_in_one_line_and_nothing_is_saved(saver, body, message):
    client, folder = saver
    answer = client.post("/api/drawings", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert message in error and '"digit": 0-9' in error and "\n" not in error
    assert not folder.exists()


def test_blank_or_broken_drawings_and_a_full_folder_save_nothing(saver, monkeypatch):
    client, folder = saver
    blank = data_url(Image.new("RGB", (280, 280), "white"))
    answer = client.post("/api/drawings", json={"image": blank, "digit": 1})
    assert answer.status_code == 422
    broken = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    answer = client.post("/api/drawings", json={"image": broken, "digit": 1})
    assert answer.status_code == 400
    assert not list(folder.rglob("*.png"))
    monkeypatch.setattr(m09(), "MAX_DRAWINGS", 1)
    first = client.post("/api/drawings", json={"image": drawing_of(1), "digit": 2})
    assert first.status_code == 200
    full = client.post("/api/drawings", json={"image": drawing_of(2), "digit": 1})
    assert full.status_code == 409
    assert "already holds 1 drawings" in full.json()["error"]
    assert len(list(folder.rglob("*.png"))) == 1


def test_08b_fine_tunes_on_drawings_saved_through_the_page_api(saver, tmp_path):
    """The loop the page teaches: label drawings, then lesson 8b fine-tunes on them."""
    client, folder = saver
    _, _, _, y = dl_utils.load_mnist_tensors()
    for digit in range(10):
        for k, i in enumerate((y == digit).nonzero().flatten()[:4].tolist()):
            labelled = {"image": drawing_of(i, k), "digit": digit}
            answer = client.post("/api/drawings", json=labelled)
            assert answer.status_code == 200, answer.text
    assert sum(client.get("/api/drawings").json()["counts"]) == 40
    result = run_script("08b_fine_tuning.py", "--folder", folder, "--epochs", "1",
                        "--checkpoint", tmp_path / "tuned.pt", inline=True)
    assert result.returncode == 0, result.stderr
    assert "20 images to fine-tune on, 20 held out" in result.stdout
    tuned = torch.load(tmp_path / "tuned.pt", weights_only=True)
    assert "my_drawings" in tuned["trained_on"]
