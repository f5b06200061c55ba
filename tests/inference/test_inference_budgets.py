"""`mvp serve` budgets before work (issue #30 items 2, 3, 4, 8, 13, 15, 16): a video that would
decode too many frames is refused from its header, and decoding has a deadline; a request's images
share one pixel budget read from headers; a prompt is refused from its length before it is
tokenized; only formats whose size is in the header are opened; every waiting request counts
against max_queue (pending batches, media being fetched and decoded); malformed media URLs are 400
OpenAI errors; media URLs are logged without credentials."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
from PIL import Image

from tests.procs import Proc, start_serve, wait_for

pytestmark = pytest.mark.integration


def _post(port: int, body: bytes, path: str = "/v1/chat/completions") -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, {k.lower(): v for k, v in response.getheaders()}


def _error(status_body: tuple[int, bytes, dict]) -> tuple[int, dict]:
    """(status, the OpenAI error object): the body must be one, whatever the status."""
    status, data, _ = status_body
    return status, json.loads(data)["error"]


def _chat(content, **extra) -> bytes:
    body = {"model": "mvp-tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **extra}
    return json.dumps(body).encode()


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _image(size: tuple[int, int], fmt: str = "PNG", mode: str = "1") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


def _video(frames: int, rate: int, size: int = 64) -> bytes:
    """An H.264 MP4 of ``frames`` frames at ``rate`` fps (PyAV; no ffmpeg binary needed)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        rgb = np.zeros((size, size, 3), np.uint8)
        for i in range(frames):
            rgb[:] = i % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _waiting(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(r'^vllm:num_requests_waiting\{model_name="mvp-tiny"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, media_server: int, s3_server: Proc) -> Proc:
    """Small budgets: 500 decoded frames, 4 Mi pixels, 256 prompt tokens (4,096 characters)."""
    proc = start_serve(
        tmp_path_factory.mktemp("strict"),
        "--max-prompt-tokens",
        "256",
        "--allowed-media-hosts",
        f"127.0.0.1:{media_server}",
        env={
            "MVP_S3_ENDPOINT": f"http://127.0.0.1:{s3_server.ports['s3']}",
            "MVP_SERVE_MAX_REQUEST_FRAMES": "500",
            "MVP_SERVE_MAX_REQUEST_PIXELS": str(4 * 1024 * 1024),
        },
        timeout=300,
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory, media_server: int) -> Proc:
    """At most 4 waiting requests; batches wait 500 ms for company; a media fetch may take 20 s (the
    /slow drip takes 30), decoding 1 ms."""
    proc = start_serve(
        tmp_path_factory.mktemp("queued"),
        "--max-queue",
        "4",
        "--max-batch-size",
        "8",
        "--batch-wait-ms",
        "500",
        "--media-timeout-s",
        "20",
        "--allowed-media-hosts",
        f"127.0.0.1:{media_server}",
        env={"MVP_SERVE_DECODE_TIMEOUT_S": "0.001", "MVP_SERVE_MAX_REQUEST_FRAMES": "100000"},
        timeout=300,
    )
    yield proc
    proc.stop()


def test_a_video_that_decodes_too_many_frames_is_refused_from_its_header(strict: Proc) -> None:
    # 1,000 frames in one second: sampling it at 1 fps decodes them all, over the budget of 500
    video = {"type": "video_url", "video_url": {"url": _data_url(_video(1000, 1000), "video/mp4")}}
    status, error = _error(_post(strict.ports["http"], _chat([video])))
    assert status == 400 and "max_request_frames=500" in error["message"], error
    assert "about 1000 frames" in error["message"]  # the header's count: refused before decoding
    # the same budget, with room: 200 frames at 100 fps
    video = {"type": "video_url", "video_url": {"url": _data_url(_video(200, 100), "video/mp4")}}
    assert _post(strict.ports["http"], _chat([video]))[0] == 200


def test_decoding_has_one_deadline_per_request(queued: Proc) -> None:
    video = {"type": "video_url", "video_url": {"url": _data_url(_video(2000, 1000), "video/mp4")}}
    status, error = _error(_post(queued.ports["http"], _chat([video])))
    assert status == 400 and "decode_timeout_s=0.001" in error["message"], error


def test_the_images_of_a_request_share_one_pixel_budget_read_from_headers(strict: Proc) -> None:
    megapixel = _image((1024, 1024))
    header_only = megapixel[:64]  # a PNG header that declares 1024x1024 and no pixel data
    parts = [{"type": "image_url", "image_url": {"url": _data_url(megapixel, "image/png")}}] * 4
    parts.append({"type": "image_url", "image_url": {"url": _data_url(header_only, "image/png")}})
    status, error = _error(_post(strict.ports["http"], _chat(parts)))
    # 5 x 1 Mi pixels > 4 Mi: the fifth is refused from its header, before its (missing) pixels
    assert status == 400 and "max_request_pixels" in error["message"], error
    assert error["param"] == "messages" and "content[4]" in error["message"]
    assert _post(strict.ports["http"], _chat(parts[:3]))[0] == 200


def test_every_header_of_a_request_is_charged_before_any_image_is_decoded(strict: Proc) -> None:
    # issue #30's abuse run: 32 images of 4096x4096 under a 4-image budget had the first four
    # decoded (200 MB) before the fifth's header refused the request; three such at once, +620 MB.
    # Here the first image has a header and no pixels: decoding it first would answer "not a
    # decodable image" for content[0]; charged first, the request is refused at content[4] from
    # its header, and nothing is decoded.
    megapixel = _image((1024, 1024))
    header_only = megapixel[:64]
    parts = [{"type": "image_url", "image_url": {"url": _data_url(header_only, "image/png")}}]
    parts += [{"type": "image_url", "image_url": {"url": _data_url(megapixel, "image/png")}}] * 4
    status, error = _error(_post(strict.ports["http"], _chat(parts)))
    assert status == 400 and "max_request_pixels" in error["message"], error
    assert "content[4]" in error["message"], error
    # within the budget, the missing pixels are found when the image is decoded
    status, error = _error(_post(strict.ports["http"], _chat(parts[:2])))
    assert status == 400 and "content[0]" in error["message"] and "decodable image" in error["message"], error
    # a video's kept frames are charged from its header too: 20 s of 448x448 at 4 fps gives 16
    # frames at 1 fps (video_max_frames), 16 x 448 x 448 = 3.2 Mi pixels; with a 1 Mi image, over
    video = {"type": "video_url", "video_url": {"url": _data_url(_video(80, 4, 448), "video/mp4")}}
    status, error = _error(_post(strict.ports["http"], _chat([parts[0], video])))
    assert status == 400 and "max_request_pixels" in error["message"] and "content[1]" in error["message"], error


def test_a_long_prompt_is_refused_before_it_is_tokenized(strict: Proc) -> None:
    status, error = _error(_post(strict.ports["http"], _chat("word " * 1000)))  # 5,000 characters
    assert status == 400 and error["code"] == "context_length_exceeded"
    assert "max_prompt_chars=4096" in error["message"], error
    parts = [{"type": "text", "text": "a" * 2500}, {"type": "text", "text": "b" * 2500}]
    status, error = _error(_post(strict.ports["http"], _chat(parts)))  # the parts add up
    assert status == 400 and "max_prompt_chars" in error["message"], error
    sample = {
        "prompt": "x" * 5000,
        "context_frames": [],
        "candidates": [],
        "label": {"answer": [1], "num_candidates": 2},
    }
    status, error = _error(_post(strict.ports["http"], json.dumps({"sample": sample}).encode(), "/v1/mvp/predict"))
    assert status == 400 and "max_prompt_chars" in error["message"], error
    # within the character bound, the token limit still holds
    status, error = _error(_post(strict.ports["http"], _chat("word " * 700)))
    assert status == 400 and "tokens; the limit is 256" in error["message"], error


def test_only_formats_with_their_size_in_the_header_are_opened(strict: Proc) -> None:
    for fmt, mime in (("ICO", "image/x-icon"), ("TIFF", "image/tiff")):
        url = _data_url(_image((64, 64), fmt, "RGB"), mime)
        status, error = _error(_post(strict.ports["http"], _chat([{"type": "image_url", "image_url": {"url": url}}])))
        assert status == 400 and "PNG, JPEG, WEBP, GIF, BMP" in error["message"], (fmt, error)
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP"):
        url = _data_url(_image((64, 48), fmt, "RGB"), "image/*")
        assert _post(strict.ports["http"], _chat([{"type": "image_url", "image_url": {"url": url}}]))[0] == 200, fmt


def test_malformed_media_urls_are_400_openai_errors(strict: Proc, media_server: int) -> None:
    host = f"127.0.0.1:{media_server}"
    for url in (
        "s3://mvp/../x.png",
        "s3://mvp/a/./x.png",
        "s3://mvp//x.png",
        "s3://user:pw@mvp/x.png",
        f"http://alice\t@{host}/x.png",
        f"http://alice\n@{host}/x.png",
        f"http://{host}/x\r\n.png",
        "http://127.0.0.1:99999/x.png",
        "http://ｅxample.com/x.png",
    ):
        status, error = _error(_post(strict.ports["http"], _chat([{"type": "image_url", "image_url": {"url": url}}])))
        assert status == 400 and error["type"] == "invalid_request_error", (url, status, error)


def test_media_urls_are_logged_without_credentials(strict: Proc, media_server: int) -> None:
    url = f"http://alice:S3cret@127.0.0.1:{media_server}/missing.png?X-Amz-Signature=T0pSecret"
    status, _ = _error(_post(strict.ports["http"], _chat([{"type": "image_url", "image_url": {"url": url}}])))
    assert status == 400
    wait_for(lambda: "media fetch answered" in strict.log(), 10, "the fetch's log line")
    log = strict.log()
    assert "S3cret" not in log and "T0pSecret" not in log and "alice" not in log
    assert f"http://***@127.0.0.1:{media_server}/missing.png?***" in log


def test_max_queue_counts_requests_set_aside_by_the_batcher(queued: Proc) -> None:
    """24 clients with different temperatures: none can share a batch, so all but one wait in the
    batcher's pending list, which max_queue now counts."""
    port = queued.ports["http"]
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_waiting(port))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(24) as pool:
            replies = list(pool.map(lambda i: _post(port, _chat("hi", temperature=0.5 + i / 20)), range(24)))
    finally:
        done.set()
        watcher.join()
    statuses = [status for status, _, _ in replies]
    assert set(statuses) <= {200, 429} and 429 in statuses, statuses
    assert all(headers.get("retry-after") == "1" for status, _, headers in replies if status == 429)
    assert max(seen) <= 4, max(seen)


def test_max_queue_counts_requests_whose_media_are_being_fetched(queued: Proc, media_server: int) -> None:
    port = queued.ports["http"]
    slow = _chat([{"type": "image_url", "image_url": {"url": f"http://127.0.0.1:{media_server}/slow"}}])
    with ThreadPoolExecutor(4) as pool:
        fetching = [pool.submit(_post, port, slow) for _ in range(4)]
        wait_for(lambda: _waiting(port) == 4, 30, "4 requests fetching their media")
        status, error = _error(_post(port, _chat("hi")))
        assert status == 429 and error["code"] == "queue_full", error
        assert [f.result()[0] for f in fetching] == [400] * 4  # the drip outlasts media_timeout_s
    wait_for(lambda: _waiting(port) == 0, 30, "the queue to empty")
    assert _post(port, _chat("hi"))[0] == 200
