"""Media behind image_url / video_url parts: data URLs, allow-listed http(s) hosts and object-store
buckets only (the server is never an open proxy), with size and time limits."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from urllib.parse import urlparse

import httpx
from PIL import Image, UnidentifiedImageError

from mvp.common.storage import Storage, StorageError
from mvp.inference.settings import ServeSettings


class MediaError(ValueError):
    """A media URL is refused or unusable; the message is safe to return to the client."""


def _allowed(csv: str) -> set[str]:
    return {x.strip() for x in csv.split(",") if x.strip()}


class MediaFetcher:
    def __init__(self, settings: ServeSettings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.hosts = _allowed(settings.allowed_media_hosts)
        self.buckets = _allowed(settings.allowed_buckets)
        self.limit = settings.max_media_mb * 1024 * 1024

    async def fetch(self, url: str) -> bytes:
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
                if parsed.hostname not in self.hosts:
                    raise MediaError(f"host {parsed.hostname!r} is not in allowed_media_hosts")
                data = await self._http(url)
            elif parsed.scheme == "s3":
                if parsed.netloc not in self.buckets:
                    raise MediaError(f"bucket {parsed.netloc!r} is not in allowed_buckets")
                try:
                    data = await asyncio.wait_for(
                        asyncio.to_thread(self.storage.get_bytes, url), self.settings.media_timeout_s
                    )
                except (StorageError, TimeoutError) as exc:
                    raise MediaError(f"cannot read {url}: {exc}") from None
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
                    raise MediaError(f"GET {url} answered {response.status_code}")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.limit:
                        raise MediaError(f"media larger than {self.settings.max_media_mb} MiB")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise MediaError(f"cannot fetch {url}: {type(exc).__name__}") from None

    async def image(self, url: str) -> Image.Image:
        data = await self.fetch(url)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError):
            raise MediaError("the URL does not hold a decodable image") from None
        return image.convert("RGB")

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
