"""Media behind image_url / video_url parts: data URLs, allow-listed http(s) hosts and object-store
buckets only (the server is never an open proxy), with size and time limits."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
from urllib.parse import urlparse

import httpx
from PIL import Image, UnidentifiedImageError

from mvp.common.storage import Storage, StorageError
from mvp.inference.settings import ServeSettings

log = logging.getLogger(__name__)


class MediaError(ValueError):
    """A media URL is refused or unusable; the message is safe to return to the client."""


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decodes an image whose header declares at most ``max_pixels`` pixels: the size is read from
    the header before any pixel is decoded, so a 16 KiB PNG of 10000x10000 px is refused at once."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # PIL's own header check, where its limit is lower than ours
        raise MediaError(f"image is over the limit of {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError):
        raise MediaError("the URL does not hold a decodable image") from None
    width, height = image.size
    if width * height > max_pixels:
        raise MediaError(f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise MediaError("the URL does not hold a decodable image") from None


def _allowed(csv: str) -> set[str]:
    return {x.strip() for x in csv.split(",") if x.strip()}


# One text for every failed fetch: a client cannot tell "connection refused" from "404" from
# "timeout" (the server is not a port scanner); the cause is logged for the operator.
FETCH_FAILED = "the media URL could not be fetched"


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
        try:
            port = parsed.port or default
        except ValueError:  # a port outside 0-65535
            return False
        return f"{parsed.hostname}:{port}" in self.hosts or (port == default and parsed.hostname in self.hosts)

    async def fetch(self, url: str) -> bytes:
        """The bytes behind ``url`` within one total deadline (``media_timeout_s``), however slowly
        the other side sends them."""
        try:
            return await asyncio.wait_for(self._fetch(url), self.settings.media_timeout_s)
        except TimeoutError:
            log.info("media fetch timed out", extra={"url": url[:200]})
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
            parsed = urlparse(url)
            if parsed.scheme in ("http", "https"):
                if not self._host_allowed(parsed):
                    raise MediaError("the URL's host and port are not in allowed_media_hosts")
                data = await self._http(url)
            elif parsed.scheme == "s3":
                if parsed.netloc not in self.buckets:
                    raise MediaError(f"bucket {parsed.netloc!r} is not in allowed_buckets")
                try:
                    data = await asyncio.to_thread(self.storage.get_bytes, url)
                except StorageError as exc:
                    log.info("media read failed", extra={"url": url[:200], "error": str(exc)[:200]})
                    raise MediaError(FETCH_FAILED) from None
            else:
                raise MediaError(f"unsupported URL scheme {parsed.scheme!r} (data:, http(s):, s3:)")
        if len(data) > self.limit:
            raise MediaError(f"media larger than {self.settings.max_media_mb} MiB")
        return data

    async def _http(self, url: str) -> bytes:
        try:
            client = httpx.AsyncClient(timeout=self.settings.media_timeout_s, follow_redirects=False)
            async with client, client.stream("GET", url) as response:
                if response.status_code != 200:
                    log.info("media fetch answered", extra={"url": url[:200], "status": response.status_code})
                    raise MediaError(FETCH_FAILED)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.limit:
                        raise MediaError(f"media larger than {self.settings.max_media_mb} MiB")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            log.info("media fetch failed", extra={"url": url[:200], "error": type(exc).__name__})
            raise MediaError(FETCH_FAILED) from None

    async def image(self, url: str) -> Image.Image:
        data = await self.fetch(url)
        return await asyncio.to_thread(decode_image, data, self.settings.max_image_pixels)

    async def video_frames(self, url: str) -> list[Image.Image]:
        from mvp.common.video import VideoError, decode_at_fps

        data = await self.fetch(url)
        try:
            frames = await asyncio.to_thread(
                decode_at_fps, data, self.settings.video_fps, 448, 8192 * 8192, self.settings.video_max_frames
            )
        except VideoError as exc:
            raise MediaError(f"video_url: {exc.reason}") from None
        return [Image.fromarray(f.rgb) for f in frames]
