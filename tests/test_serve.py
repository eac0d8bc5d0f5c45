"""Lesson 09: the API answers right, refuses bad requests with the right status, survives."""

import base64
import http.client
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import benchmark_reads, lesson, run_script
from PIL import Image

import dl_utils
import serving


def m09():
    return lesson("09_serve_digits")


@pytest.fixture(scope="module")
def server(served_models_dir):
    models = m09().load_models(served_models_dir, "cpu")
    srv = m09().make_server("127.0.0.1", 0, models)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method, path, body=None, headers=None):
    """One raw HTTP request; (status, JSON or text answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(data) if "json" in kind else data.decode())


def data_url(image: Image.Image, fmt="PNG") -> str:
    import io
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def test_only_state_dict_checkpoints_are_served(served_models_dir):
    models = m09().load_models(served_models_dir, "cpu")
    assert [m["checkpoint"].endswith("mlp.pt") for m in models] == [True]  # not *_whole.pt
    assert (served_models_dir / "mlp_whole.pt").exists()
    assert not models[0]["model"].training  # eval mode, once, at load


def test_drawn_test_digits_are_predicted_as_the_model_predicts_them(server):
    m = m09()
    _, y, drawings = m.drawn_test_digits(40, seed=3)
    model = server.models[0]["model"]
    right = 0
    for png, label in zip(drawings, y.tolist()):
        status, answer = request(server, "POST", "/api/predict",
                                 serving.predict_request(png), {"Content-Type": "application/json"})
        assert status == 200
        pixels = np.array(answer["input"], dtype=np.uint8)
        assert pixels.shape == (28, 28)
        with torch.no_grad():  # the same numbers, computed here from the returned input
            probs = torch.softmax(model(dl_utils.normalize(torch.from_numpy(pixels)[None])), 1)
        (served,) = answer["models"]
        assert served["prediction"] == int(probs.argmax())
        assert served["probabilities"] == pytest.approx(probs[0].tolist(), abs=1e-5)
        right += served["prediction"] == label
    assert right >= 32  # 80% of 40 drawn digits, from an MLP trained for 2 epochs


def test_jpeg_and_light_on_dark_drawings_work(server):
    _, _, test_X, test_y = dl_utils.load_mnist_tensors()
    big = Image.fromarray(test_X[0].numpy()).resize((200, 200))  # light ink on black
    for image, fmt in ((big, "PNG"), (big.convert("RGB"), "JPEG")):
        status, answer = request(server, "POST", "/api/predict",
                                 json.dumps({"image": data_url(image, fmt)}))
        assert status == 200 and answer["models"][0]["prediction"] == int(test_y[0])


@pytest.mark.parametrize("method, path, body, headers, status", [
    ("POST", "/api/predict", b"{not json", {}, 400),
    ("POST", "/api/predict", b'["a list"]', {}, 400),
    ("POST", "/api/predict", b'{"image": 5}', {}, 400),
    ("POST", "/api/predict", b'{"image": "data:image/png;base64,@@@"}', {}, 400),
    ("POST", "/api/predict", b'{"image": "data:image/png;base64,aGVsbG8="}', {}, 400),
    ("POST", "/api/predict", b"\xff\xfe", {}, 400),
    ("GET", "/api/predict", None, {}, 405),
    ("DELETE", "/", None, {}, 405),
    ("GET", "/../../etc/passwd", None, {}, 404),
    ("GET", "/09_serve_digits.py", None, {}, 404),
    ("POST", "/api/other", b"{}", {}, 404),
])
def test_bad_requests_get_their_status_and_the_server_survives(server, method, path, body,
                                                              headers, status):
    got, answer = request(server, method, path, body, headers)
    assert got == status and isinstance(answer, dict) and answer["error"]
    assert request(server, "GET", "/api/models")[0] == 200  # still serving


def test_blank_canvas_is_422(server):
    blank = Image.new("RGBA", (280, 280), "white")
    status, answer = request(server, "POST", "/api/predict", json.dumps({"image": data_url(blank)}))
    assert status == 422 and "draw a digit" in answer["error"]


def raw(server, data: bytes) -> bytes:
    """Bytes straight onto a socket; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_missing_length_too_large_and_garbage_requests(server):
    over = raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000"
                       b"\r\n\r\n" + b"x" * 1000)  # answered before the body is read
    assert over.startswith(b"HTTP/1.0 413 ") and b"the limit is" in over
    no_length = raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\n\r\n")
    assert no_length.startswith(b"HTTP/1.0 411 ")
    garbage = raw(server, b"\x00\x01garbage\r\n\r\n")
    # not even HTTP: http.server answers the way HTTP/0.9 expects (a body, no status line)
    assert b'"error": "Bad request syntax' in garbage
    assert request(server, "GET", "/api/models")[0] == 200


def test_the_page_is_served_and_self_contained(server):
    status, page = request(server, "GET", "/")
    assert status == 200 and "<canvas" in page and "/api/predict" in page
    assert "http://" not in page and "https://" not in page  # no CDN: works offline


def test_port_in_use_is_one_clear_line(server):
    port = server.server_address[1]
    result = run_script("09_serve_digits.py", "--port", port, inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot listen on" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_self_check_runs_and_stops(served_models_dir):
    result = run_script("09_serve_digits.py", "--self-check", "--models-dir", served_models_dir,
                        "--requests", "10", "--drawn", "50", inline=True)
    assert result.returncode == 0, result.stderr
    benchmark_reads("09_serve_digits.py", result.stdout)
    assert "p95" in result.stdout and "drawn, prepared (served)" in result.stdout


def test_no_model_yet_says_which_lesson_to_run(tmp_path):
    result = run_script("09_serve_digits.py", "--self-check", "--models-dir", tmp_path,
                        "--requests", "3", inline=True)
    assert result.returncode == 0, result.stderr
    assert "run python 03_train_mnist.py" in result.stdout


def test_ctrl_c_stops_the_server_cleanly(served_models_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    # Ctrl-C as from a terminal, even when the tests were started in the background
    # (a shell then starts them with SIGINT ignored, and children inherit that)
    restore = None if os.name != "posix" else (
        lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc = subprocess.Popen([sys.executable, str(ROOT / "09_serve_digits.py"), "--port", "0",
                             "--models-dir", str(served_models_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=restore)
    deadline = time.time() + 60
    out = ""
    while "Ctrl-C stops" not in out and time.time() < deadline:
        out += proc.stdout.readline()
    os.kill(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Stopped." in rest and "Traceback" not in err, (out, rest, err)
    assert serving.is_loopback("127.0.0.1") and not serving.is_loopback("0.0.0.0")


def test_hostile_bodies_and_headers_are_4xx_never_500(server):
    """The bodies and headers a hostile client sends: each one answered with a 4xx."""
    cases = [b"[" * 100_000 + b"]" * 100_000,  # nested 100,000 deep
             b'{"image": ' + b"9" * 5000 + b"}",  # a 5,000-digit number
             b'{"image": "\xff\xfe"}']  # not UTF-8
    for body in cases:
        status, answer = request(server, "POST", "/api/predict", body)
        assert 400 <= status < 500 and answer["error"], body[:20]
    odd_length = raw(server, "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: ²"
                             "\r\n\r\n{}".encode("latin-1"))
    assert odd_length.startswith(b"HTTP/1.0 400 ")
    head = raw(server, b"HEAD /api/models HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ") and head.endswith(b"\r\n\r\n")  # no body
    assert request(server, "GET", "/api/models")[0] == 200


def test_an_eps_image_is_never_decoded(server, tmp_path, monkeypatch):
    """Pillow would hand EPS content to Ghostscript: a fake `gs` on PATH proves it is
    never started, whether the file is posted, given to 04 --image, or read by 08."""
    marker = tmp_path / "gs_ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
    status, answer = request(server, "POST", "/api/predict", json.dumps(
        {"image": "data:image/png;base64," + base64.b64encode(eps).decode()}))
    assert status == 400 and "not a PNG or JPEG" in answer["error"]
    (tmp_path / "digit.png").write_bytes(eps)  # EPS under a .png name
    with pytest.raises(dl_utils.FriendlyError, match="not a PNG or JPEG"):
        dl_utils.read_grayscale(tmp_path / "digit.png")
    assert not marker.exists()


def test_a_client_that_leaves_early_prints_no_traceback(server, capfd):
    png = serving.predict_request(b"not really")
    for _ in range(5):  # send a request, then close before the answer is read
        with socket.create_connection(("127.0.0.1", server.server_address[1])) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         + str(len(png) + 100).encode() + b"\r\n\r\n" + png)
    assert request(server, "GET", "/api/models")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_200_requests_from_20_threads_are_all_answered(server):
    from concurrent.futures import ThreadPoolExecutor
    _, y, drawings = m09().drawn_test_digits(10, seed=5)
    bodies = [serving.predict_request(png) for png in drawings]

    def ask(i):
        status, answer = request(server, "POST", "/api/predict", bodies[i % 10])
        return status, answer["models"][0]["prediction"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(ask, range(200)))
    assert [status for status, _ in answers] == [200] * 200
    assert all(answers[i][1] == answers[i % 10][1] for i in range(200))  # same image, same answer


def test_a_huge_image_in_a_small_body_is_413(server, tmp_path):
    """7000x7000 pixels fit in a 60 KB PNG; the header says so before anything is decoded."""
    image = Image.new("L", (7000, 7000), 255)
    image.paste(0, (3000, 3000, 4000, 4000))
    status, answer = request(server, "POST", "/api/predict",
                             json.dumps({"image": data_url(image)}))
    assert status == 413 and "megapixels" in answer["error"]


def test_unusable_checkpoints_are_skipped_with_one_line_each(served_models_dir, tmp_path,
                                                             capsys):
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
