"""``abrl serve`` over real HTTP on loopback: uvicorn in a thread (the app) or a subprocess (the
CLI), a tiny torch-free model with an abrl card, and ``Predictor`` in-process as the oracle."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
Image = pytest.importorskip("PIL.Image")

from card_model import write_card_model  # noqa: E402

from abrl_deploy.errors import RuntimeBackendError  # noqa: E402
from abrl_deploy.predictor import Predictor  # noqa: E402
from abrl_deploy.serve.app import create_app  # noqa: E402

MAX_BODY = 64 * 1024
MAX_BATCH = 4


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` on a free loopback port in a background thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def png(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_card_model(tmp_path_factory.mktemp("serve") / "model.onnx", features=True)


@pytest.fixture(scope="module")
def predictor(model) -> Iterator[Predictor]:
    with Predictor(model, backend="ort-cpu", threads=1) as p:
        yield p


@pytest.fixture(scope="module")
def url(predictor) -> Iterator[str]:
    with serving(create_app(predictor, max_body_bytes=MAX_BODY, max_batch=MAX_BATCH)) as base:
        yield base


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Three PNGs of different sizes (resize and crop both matter), written to disk."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, size in enumerate([(20, 24), (16, 16), (40, 30)]):
        paths.append(folder / f"img{i}.png")
        paths[-1].write_bytes(png(i, size))
    return paths


def assert_one_line_error(r: httpx.Response, status: int, fragment: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and fragment in body["error"], body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]


def test_healthz(url):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}


def test_predict_multipart_equals_predictor(url, predictor, images):
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in images]
    r = httpx.post(f"{url}/v1/predict", files=files, data={"top_k": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = [p.to_dict() for p in predictor.predict([str(p) for p in images], top_k=3)]
    assert body == {"model": str(predictor.path), "backend": "ort-cpu", "predictions": expected}


def test_json_batch_equals_multipart(url, predictor, images):
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in images]
    multipart = httpx.post(f"{url}/v1/predict", files=files).json()
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
    encoded[1] = "data:image/png;base64," + encoded[1]
    r = httpx.post(f"{url}/v1/predict", json={"images": encoded, "top_k": 5})
    assert r.status_code == 200, r.text
    assert r.json() == multipart
    assert len(multipart["predictions"][0]["labels"]) == 5


def test_json_pixel_lists_equal_predictor(url, predictor):
    pixels = np.random.default_rng(7).integers(0, 256, (18, 21, 3), dtype=np.uint8)
    r = httpx.post(f"{url}/v1/predict", json={"images": [pixels.tolist()], "top_k": 2})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [predictor.predict(pixels, top_k=2)[0].to_dict()]


def test_embed_equals_predictor(url, predictor, images):
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in images]
    r = httpx.post(f"{url}/v1/embed", files=files)
    assert r.status_code == 200, r.text
    expected = predictor.embed([str(p) for p in images])
    assert r.json()["dim"] == expected.shape[1] == 8
    np.testing.assert_array_equal(np.asarray(r.json()["features"], np.float32), expected)


def test_embed_without_features_is_409(tmp_path, images):
    path = write_card_model(tmp_path / "plain.onnx", features=False)
    with Predictor(path, backend="ort-cpu", threads=1) as p:
        with serving(create_app(p, max_body_bytes=MAX_BODY, max_batch=MAX_BATCH)) as base:
            r = httpx.post(f"{base}/v1/embed", files={"file": images[0].read_bytes()})
            assert_one_line_error(r, 409, "no 'features' output")
            assert httpx.post(f"{base}/v1/predict", files={"file": b"x"}).status_code == 400


def test_model_returns_card_and_runtime(url, predictor):
    body = httpx.get(f"{url}/v1/model").json()
    assert body["card"] == json.loads(json.dumps(predictor.card.to_dict()))
    assert body["card"]["class_names"] == list("abcdefghij")
    assert body["runtime"] == json.loads(json.dumps(predictor.describe()))
    assert body["limits"] == {"max_body_bytes": MAX_BODY, "max_batch": MAX_BATCH}


def test_openapi_documents_both_request_formats(url):
    spec = httpx.get(f"{url}/openapi.json").json()
    content = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert "base64" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["description"]


PNG = base64.b64encode(png(0, (16, 16))).decode()


@pytest.mark.parametrize(
    "kwargs, status, fragment",
    [
        ({"files": {"file": ("bad.png", b"not an image", "image/png")}}, 400,
         "image 0 ('bad.png'): cannot decode"),
        ({"files": {"file": b"\x89PNG\r\n\x1a\n truncated"}}, 400, "cannot decode"),
        ({"files": {"other": b"x"}}, 400, "unknown form fields ['other']"),
        ({"files": {"top_k": (None, "3")}}, 400, "no images: send one or more files"),
        ({"files": {"file": (None, "text")}}, 400, "must hold file uploads"),
        ({"data": {"top_k": "3"}}, 415, "'application/x-www-form-urlencoded'"),
        ({"files": {"file": b"x"}, "data": {"top_k": "two"}}, 400, "top_k 'two'"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
         "not valid JSON"),
        ({"json": {"imgs": [PNG]}}, 400, "expected a JSON object with keys"),
        ({"json": [PNG]}, 400, "expected a JSON object"),
        ({"json": {"images": []}}, 400, "non-empty list"),
        ({"json": {"images": PNG}}, 400, "non-empty list"),
        ({"json": {"images": ["%%%"]}}, 400, "image 0: not valid base64"),
        ({"json": {"images": [PNG, 7]}}, 400, "image 1: got a JSON int"),
        ({"json": {"images": [[[0.5, 0.5, 0.5]]]}}, 400, "numbers with fractions"),
        ({"json": {"images": [[[[1, 2, 3]]], [[1, 2]]]}}, 400, "image 1: pixel lists"),
        ({"json": {"images": [[[[1, 2, 3], [1, 2]]]]}}, 400, "ragged"),
        ({"json": {"images": [[[[1, 2, 300]]]]}}, 400, "0..255"),
        ({"json": {"images": [PNG], "top_k": 0}}, 400, "top_k 0 must be >= 1"),
        ({"json": {"images": [PNG], "top_k": "3"}}, 400, "top_k must be an integer"),
        ({"json": {"images": [PNG], "extra": 1}}, 400, "unknown JSON keys ['extra']"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "text/plain"),
    ],
)  # fmt: skip
def test_bad_input_is_4xx_with_one_line(url, kwargs, status, fragment):
    r = httpx.post(f"{url}/v1/predict", **kwargs)
    assert_one_line_error(r, status, fragment)


def test_image_over_pixel_limit_is_400(url, monkeypatch):
    monkeypatch.setattr("abrl_deploy.serve.inputs.MAX_IMAGE_PIXELS", 100)
    r = httpx.post(f"{url}/v1/predict", json={"images": [PNG]})
    assert_one_line_error(r, 400, "image 0: 16x16 pixels is more than this server decodes")


def test_embed_rejects_top_k(url):
    r = httpx.post(f"{url}/v1/embed", json={"images": [PNG], "top_k": 3})
    assert_one_line_error(r, 400, "unknown JSON keys ['top_k']")


def test_unknown_path_is_json_404(url):
    assert_one_line_error(httpx.get(f"{url}/v2/nothing"), 404, "Not Found")


def test_body_over_limit_is_413(url):
    r = httpx.post(f"{url}/v1/predict", files={"file": os.urandom(MAX_BODY + 1)})
    assert_one_line_error(r, 413, "--max-body-mb")


def test_streamed_body_over_limit_is_413(url):
    """No Content-Length (chunked): the server counts the bytes as they arrive."""

    def chunks() -> Iterator[bytes]:
        yield b'{"images": ["'
        for _ in range(5):
            yield b"A" * 16 * 1024

    headers = {"content-type": "application/json"}
    r = httpx.post(f"{url}/v1/predict", content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    assert_one_line_error(r, 413, "--max-body-mb")


@pytest.mark.parametrize("as_json", [False, True])
def test_batch_over_max_batch_is_413(url, as_json):
    def post(count: int) -> httpx.Response:
        if as_json:
            return httpx.post(f"{url}/v1/predict", json={"images": [PNG] * count})
        files = [("file", base64.b64decode(PNG))] * count
        return httpx.post(f"{url}/v1/predict", files=files)

    assert_one_line_error(post(MAX_BATCH + 1), 413, f"at most {MAX_BATCH} (--max-batch)")
    many = post(MAX_BATCH + 3)  # multipart: past Starlette's own max_files as well
    assert_one_line_error(many, 413, "(--max-batch)")
    r = post(MAX_BATCH)
    assert r.status_code == 200 and len(r.json()["predictions"]) == MAX_BATCH


def test_concurrent_requests_agree(url, predictor, images):
    """Several clients at once (the threadpool runs them side by side) get the same answers."""
    expected = [p.to_dict() for p in predictor.predict([str(images[0])])]
    results: list[object] = []

    def client() -> None:
        for _ in range(3):
            r = httpx.post(f"{url}/v1/predict", files={"file": images[0].read_bytes()})
            results.append(r.json()["predictions"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [expected] * 12


class _Wrapped:
    """A Predictor whose ``predict`` is replaced; everything else is the real one."""

    def __init__(self, predictor: Predictor, predict):
        self._predictor, self.predict = predictor, predict

    def __getattr__(self, name: str):
        return getattr(self._predictor, name)


def test_inference_does_not_block_the_event_loop(predictor, images):
    """While one request's inference is held inside the threadpool, /healthz still answers."""
    entered, release = threading.Event(), threading.Event()

    def held_predict(x, top_k=5):
        entered.set()
        assert release.wait(60)
        return predictor.predict(x, top_k=top_k)

    app = create_app(_Wrapped(predictor, held_predict), max_body_bytes=MAX_BODY, max_batch=1)
    with serving(app) as base:
        answers: list[int] = []
        slow = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{base}/v1/predict", files={"file": images[0].read_bytes()}, timeout=60
        ).status_code))  # fmt: skip
        slow.start()
        try:
            assert entered.wait(30)
            assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
        finally:
            release.set()
            slow.join(timeout=60)
        assert answers == [200]


@pytest.mark.parametrize(
    "error, fragment",
    [
        (RuntimeError("secret detail\nline two"), "internal server error"),
        (RuntimeBackendError("CUDA out of memory\nmore"), "CUDA out of memory"),
    ],
)
def test_server_failure_is_500_with_one_line(predictor, images, error, fragment):
    def failing_predict(x, top_k=5):
        raise error

    app = create_app(_Wrapped(predictor, failing_predict), max_body_bytes=MAX_BODY, max_batch=1)
    with serving(app) as base:
        r = httpx.post(f"{base}/v1/predict", files={"file": images[0].read_bytes()})
    assert_one_line_error(r, 500, fragment)
    assert "secret" not in r.text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_serves_healthz(model, images, workers):
    port = free_port()
    cmd = [sys.executable, "-m", "abrl_deploy.cli", "serve", str(model), "--port", str(port),
           "--backend", "ort-cpu", "--threads", "1", "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "abrl serve did not answer /healthz"
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer == {"status": "ok"}
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/v1/predict", files={"file": images[0].read_bytes()})
        assert r.status_code == 200 and r.json()["backend"] == "ort-cpu"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "abrl serve:" in out and f"{workers} worker(s)" in out


def test_cli_bad_model_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from abrl_deploy.cli import app

    r = CliRunner().invoke(app, ["serve", str(tmp_path / "missing.onnx")])
    assert r.exit_code == 2
    assert "is not a model file" in r.output and "Traceback" not in r.output


def test_cli_rejects_bad_options(model):
    from typer.testing import CliRunner

    from abrl_deploy.cli import app

    r = CliRunner().invoke(app, ["serve", str(model), "--workers", "0", "--max-batch", "0"])
    assert r.exit_code == 2
    assert "--workers 0" in r.output and "--max-batch 0" in r.output


def test_cli_without_fastapi_is_one_line_install_hint(model):
    code = ("import sys; sys.modules['fastapi'] = None; from abrl_deploy.cli import main; "
            f"sys.argv = ['abrl', 'serve', {str(model)!r}]; main()")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "fastapi" in lines[0] and "pip install 'abrl[serve]'" in lines[0]


class _CountingPredictor:
    """Wraps a Predictor; records the most model calls that were running at once."""

    def __init__(self, inner) -> None:
        self._inner, self._lock, self.running, self.most = inner, threading.Lock(), 0, 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def predict(self, x, top_k=5):
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)  # long enough for every client's request to be waiting
        try:
            return self._inner.predict(x, top_k=top_k)
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_model_calls_at_once_are_bounded_by_concurrency(predictor, images, concurrency):
    """Issue 20: unbounded, concurrent requests ran concurrent CPU sessions that oversubscribed
    the cores; the server runs at most --concurrency model calls (decoding goes on beside)."""
    counting = _CountingPredictor(predictor)
    app = create_app(counting, max_body_bytes=MAX_BODY, max_batch=MAX_BATCH,
                     concurrency=concurrency)  # fmt: skip
    with serving(app) as base:
        files = [("file", (p.name, p.read_bytes(), "image/png")) for p in images]
        codes: list[int] = []
        threads = [threading.Thread(target=lambda: codes.append(
            httpx.post(f"{base}/v1/predict", files=files, timeout=60).status_code))
            for _ in range(4)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [200] * 4
    assert counting.most == concurrency
