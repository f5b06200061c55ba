"""Media behind image_url / video_url parts: data URLs, allow-listed http(s) hosts and object-store
buckets only (the server is never an open proxy), with size and time limits, and one budget per
request (pixels held, frames decoded, a decode deadline) checked from headers before decoding."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import io
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx
from PIL import Image, UnidentifiedImageError

from mvp.common.storage import Storage, StorageError
from mvp.inference.settings import ServeSettings

log = logging.getLogger(__name__)

# Formats whose plugins read the size from the header and decode nothing before load(). Others are
# refused before any plugin sees the bytes: ICO decodes its images on open (a 640 KiB ICO took
# 650 MB before its size could be checked), EPS runs Ghostscript, TIFF and PSD hold many layers.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Longest side of a frame taken from a video_url (the frames are scaled once, while decoding).
VIDEO_FRAME_SIZE = 448


class MediaError(ValueError):
    """A media URL is refused or unusable; the message is safe to return to the client."""


class MediaBudget:
    """What the images and videos of one request may cost together: pixels decoded and held
    (``max_request_pixels``), frames decoded (``max_request_frames``) and one deadline for all the
    decoding (``decode_timeout_s``, from the first decode on). Each charge is made from a header,
    before the decoding it pays for."""

    def __init__(self, settings: ServeSettings) -> None:
        self.max_pixels = settings.max_request_pixels
        self.max_frames = settings.max_request_frames
        self.timeout_s = settings.decode_timeout_s
        self.pixels = 0
        self.frames = 0
        self._deadline: float | None = None

    def check(self, pixels: int, frames: int) -> None:
        """MediaError unless ``pixels`` and ``frames`` more fit in the budget."""
        if self.pixels + pixels > self.max_pixels:
            raise MediaError(
                f"the request's images and video frames add up to over max_request_pixels={self.max_pixels} pixels"
            )
        if self.frames + frames > self.max_frames:
            raise MediaError(f"the request's media need over max_request_frames={self.max_frames} decoded frames")

    def charge(self, pixels: int, frames: int) -> None:
        self.check(pixels, frames)
        self.pixels += pixels
        self.frames += frames

    @property
    def frames_left(self) -> int:
        return self.max_frames - self.frames

    def deadline(self) -> float:
        """The ``time.monotonic()`` by which the request's decoding must be done; the clock starts
        at the first call."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout_s
        return self._deadline

    def timed_out(self) -> MediaError:
        return MediaError(f"decoding the request's media took over decode_timeout_s={self.timeout_s}s")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline():
            raise self.timed_out()


def open_image(data: bytes, max_pixels: int, budget: MediaBudget) -> Image.Image:
    """Opens an image whose header declares at most ``max_pixels`` pixels and charges ``budget``
    for them; no pixel is decoded (``load_image`` does that), so a 16 KiB PNG of 10000x10000 px is
    refused at once. Only ``IMAGE_FORMATS`` are opened."""
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:  # PIL's own header check, where its limit is lower than ours
        raise MediaError(f"image is over the limit of {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError):
        raise MediaError(f"the URL does not hold a decodable image ({', '.join(IMAGE_FORMATS)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise MediaError(f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    budget.charge(width * height, 1)
    budget.check_time()
    return image


def load_image(image: Image.Image, budget: MediaBudget) -> Image.Image:
    """The pixels of an image ``open_image`` checked, as RGB."""
    budget.check_time()
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise MediaError("the URL does not hold a decodable image") from None


def video_header(data: bytes) -> tuple[int, int, float | None, float | None, int | None]:
    """(width, height, frames per second, duration in seconds, frame count) as the container and
    its first video stream declare them, without decoding a frame; unknown values are None. Raises
    MediaError when FFmpeg cannot open the bytes or they hold no video stream."""
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        raise MediaError("video_url: FFmpeg cannot open it (not a media file, or a corrupt container)") from None
    with container:
        if not container.streams.video:
            raise MediaError("video_url: the file has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / 1_000_000 if container.duration else None
        ctx = stream.codec_context
        return ctx.width, ctx.height, float(rate) if rate else None, duration, stream.frames or None


def frames_to_decode(header: tuple, fps: float, max_frames: int) -> int | None:
    """How many frames the decoder goes through to sample ``max_frames`` at ``fps`` (every frame
    up to the last sample, sampled or not), from a ``video_header``; None when the header does
    not say."""
    _, _, rate, duration, count = header
    span = max_frames / fps
    if duration is not None:
        span = min(span, duration)
    estimates = [int(rate * span) + 1] if rate else []
    if count:
        estimates.append(count)
    return min(estimates) if estimates else None


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^?#]*@")


def redact_url(url: str) -> str:
    """``url`` as it may appear in a log line: no user name or password (``http://***@host/``), no
    query string (presigned URLs carry their signature there), no data-URL payload, control
    characters escaped (no forged log lines), at most 200 characters."""
    if url.startswith("data:"):
        url = url.partition(",")[0] + ",***"
    else:
        url = _USERINFO.sub(r"\1***@", url)
        head, sep, _ = url.partition("?")
        url = head + (sep and "?***")
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in url)
    return safe[:200]


_ANY_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@]*@")


class RedactCredentials(logging.Filter):
    """A handler filter: the user name and password of any URL in a log record (its message and
    its string fields, whichever library logged it) become ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message:
            record.msg, record.args = _ANY_USERINFO.sub(r"\1***@", message), None
        for key, value in list(vars(record).items()):
            if isinstance(value, str) and "@" in value and key != "msg":
                setattr(record, key, _ANY_USERINFO.sub(r"\1***@", value))
        return True


def _allowed(csv: str) -> set[str]:
    return {x.strip() for x in csv.split(",") if x.strip()}


# One text for every failed fetch: a client cannot tell "connection refused" from "404" from
# "timeout" (the server is not a port scanner); the cause is logged for the operator.
FETCH_FAILED = "the media URL could not be fetched"


def _checked(url: str):
    """The parsed URL, or MediaError for what parsers disagree on: whitespace or control
    characters (urllib drops a tab or newline before '@' that httpx refuses; the host checked and
    the host fetched must be the same), non-ASCII characters, a malformed port."""
    if not url.isascii():
        raise MediaError("media URLs must be ASCII (percent-encode other characters)")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise MediaError("the media URL contains whitespace or control characters")
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise MediaError("the media URL is malformed") from None
    return parsed


class MediaFetcher:
    def __init__(self, settings: ServeSettings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.hosts = _allowed(settings.allowed_media_hosts)
        self.buckets = _allowed(settings.allowed_buckets)
        self.limit = settings.max_media_mb * 1024 * 1024

    def _host_allowed(self, parsed) -> bool:
        """``host`` entries allow that host on the scheme's default port only; ``host:port`` that
        port only."""
        default = 443 if parsed.scheme == "https" else 80
        port = parsed.port or default
        return f"{parsed.hostname}:{port}" in self.hosts or (port == default and parsed.hostname in self.hosts)

    async def fetch(self, url: str) -> bytes:
        """The bytes behind ``url`` within one total deadline (``media_timeout_s``), however slowly
        the other side sends them."""
        try:
            return await asyncio.wait_for(self._fetch(url), self.settings.media_timeout_s)
        except TimeoutError:
            log.info("media fetch timed out", extra={"url": redact_url(url)})
            raise MediaError(FETCH_FAILED) from None

    async def _fetch(self, url: str) -> bytes:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            if ";base64" not in header:
                raise MediaError("data URLs must be base64-encoded")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise MediaError("data URL is not valid base64") from None
        else:
            parsed = _checked(url)
            if parsed.scheme in ("http", "https"):
                if not self._host_allowed(parsed):
                    raise MediaError("the URL's host and port are not in allowed_media_hosts")
                data = await self._http(url)
            elif parsed.scheme == "s3":
                data = await self._s3(url, parsed)
            else:
                raise MediaError(f"unsupported URL scheme {parsed.scheme!r} (data:, http(s):, s3:)")
        if len(data) > self.limit:
            raise MediaError(f"media larger than {self.settings.max_media_mb} MiB")
        return data

    async def _s3(self, url: str, parsed) -> bytes:
        if "@" in parsed.netloc or ":" in parsed.netloc:
            raise MediaError("s3:// URLs name a bucket only (no credentials, no port)")
        if parsed.netloc not in self.buckets:
            raise MediaError(f"bucket {parsed.netloc!r} is not in allowed_buckets")
        key = parsed.path.removeprefix("/")
        if parsed.query or parsed.fragment or "?" in url or "#" in url:
            raise MediaError("s3:// URLs have no query or fragment")
        if any(segment in ("", ".", "..") for segment in key.split("/")):
            raise MediaError("the s3:// URL's key has an empty, '.' or '..' segment")
        try:
            return await asyncio.to_thread(self.storage.get_bytes, url)
        except (StorageError, ValueError) as exc:
            log.info("media read failed", extra={"url": redact_url(url), "error": str(exc)[:200]})
            raise MediaError(FETCH_FAILED) from None

    async def _http(self, url: str) -> bytes:
        try:
            client = httpx.AsyncClient(timeout=self.settings.media_timeout_s, follow_redirects=False)
            async with client, client.stream("GET", url) as response:
                if response.status_code != 200:
                    log.info("media fetch answered", extra={"url": redact_url(url), "status": response.status_code})
                    raise MediaError(FETCH_FAILED)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.limit:
                        raise MediaError(f"media larger than {self.settings.max_media_mb} MiB")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            log.info("media fetch failed", extra={"url": redact_url(url), "error": type(exc).__name__})
            raise MediaError(FETCH_FAILED) from None

    async def plan(self, url: str, kind: str, budget: MediaBudget) -> Callable[[], list[Image.Image]]:
        """Fetches an ``image_url`` or ``video_url`` (``kind``) and charges ``budget`` from its
        header; returns the call that decodes it (to run in a worker thread). A request's media are
        all planned before any is decoded, so one over the budget costs no decoding at all."""
        data = await self.fetch(url)
        if kind == "image_url":
            image = await asyncio.to_thread(open_image, data, self.settings.max_image_pixels, budget)
            return lambda: [load_image(image, budget)]
        reserved = await asyncio.to_thread(self._video_plan, data, budget)
        return functools.partial(self._decode_video, data, budget, reserved)

    def _video_plan(self, data: bytes, budget: MediaBudget) -> int:
        """Checks a video from its header (resolution, the frames sampling it decodes) and charges
        the pixels of the frames it gives, as they are kept; returns those pixels."""
        s = self.settings
        header = video_header(data)
        width, height = header[0], header[1]
        if width * height > s.max_image_pixels:
            raise MediaError(f"video_url: {width}x{height} frames are over the limit of {s.max_image_pixels} pixels")
        expected = frames_to_decode(header, s.video_fps, s.video_max_frames)
        if expected is not None and expected > budget.frames_left:
            raise MediaError(
                f"video_url: sampling it decodes about {expected} frames, over the request's "
                f"max_request_frames={budget.max_frames}"
            )
        scale = min(1.0, VIDEO_FRAME_SIZE / max(width, height, 1))
        held = max(1, round(width * scale)) * max(1, round(height * scale))  # one frame as it is kept
        reserved = min(s.video_max_frames, expected or s.video_max_frames) * held
        budget.charge(reserved, 0)
        return reserved

    def _decode_video(self, data: bytes, budget: MediaBudget, reserved: int) -> list[Image.Image]:
        """The video's sampled frames. The frames actually decoded and the deadline are counted
        while decoding (a header can lie); frames beyond the ``reserved`` pixels are charged after."""
        from mvp.common.video import VideoError, decode_at_fps

        s = self.settings
        allowed, deadline = budget.frames_left, budget.deadline()
        decoded = 0

        def count() -> None:
            nonlocal decoded
            decoded += 1
            if decoded > allowed:
                raise VideoError("too_many_frames", f"it decodes over max_request_frames={budget.max_frames} frames")
            if time.monotonic() > deadline:
                raise VideoError("decode_timeout", budget.timed_out().args[0])

        try:
            frames = decode_at_fps(
                data, s.video_fps, VIDEO_FRAME_SIZE, s.max_image_pixels, s.video_max_frames, on_frame=count
            )
        except VideoError as exc:
            raise MediaError(f"video_url: {exc.reason}") from None
        held = sum(f.rgb.shape[0] * f.rgb.shape[1] for f in frames)
        budget.charge(max(0, held - reserved), decoded)
        return [Image.fromarray(f.rgb) for f in frames]
