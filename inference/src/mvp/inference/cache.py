"""The checkpoint cache of `mvp serve` is trusted only as far as it can be checked: its folder is
private to this user (anyone who can write to it chooses the model served, and the folder names
are computable from a bucket listing), and a cached checkpoint is served only while its files
match the store listing's names, sizes and content digests (ETags)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
from pathlib import Path

from mvp.common.storage import ObjectInfo, Storage, is_s3

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Part sizes S3 clients upload with (minio's 5 MiB, boto3's and the AWS CLI's 8 MiB, ...): a
# multipart ETag is the MD5 of its parts' MD5s, so checking it needs the part size.
PART_SIZES_MIB = (5, 8, 16, 64)


class CacheError(RuntimeError):
    """The cache cannot be trusted or its checkpoint does not match the store."""


def private_dir(path: Path) -> Path:
    """``path``, created 0700 when missing; an existing one must be a real directory (not a
    symlink) owned by this user with no access for group or others, or CacheError says how to fix
    it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"cache_dir {path} is not a directory (a symlink or a file); point --cache-dir elsewhere")
    if info.st_uid != os.geteuid():
        raise CacheError(
            f"cache_dir {path} belongs to uid {info.st_uid}, not to this user ({os.geteuid()}): whoever owns it "
            "chooses the model served; point --cache-dir at a folder of your own"
        )
    if info.st_mode & 0o077:
        raise CacheError(
            f"cache_dir {path} is open to group or others (mode {stat.S_IMODE(info.st_mode):o}): others could plant "
            f"a checkpoint in it; `chmod 700 {path}` after checking its contents, or point --cache-dir elsewhere"
        )
    return path


def _md5_parts(path: Path, part_size: int) -> tuple[str, int]:
    """(MD5 of the parts' MD5s, part count): the ETag of a multipart upload in ``part_size`` parts."""
    digests = []
    with path.open("rb") as fh:
        while chunk := fh.read(part_size):
            digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest(), len(digests)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


_SINGLE = re.compile(r"[0-9a-f]{32}")
_MULTI = re.compile(r"([0-9a-f]{32})-([0-9]+)")


def etag_matches(path: Path, etag: str) -> bool | None:
    """Whether the file's content has this S3 ETag: True / False, or None when the ETag is not a
    content digest this can check (e.g. SSE-KMS, or a multipart upload in unusual part sizes)."""
    etag = etag.strip('"').lower()
    if _SINGLE.fullmatch(etag):
        return _md5(path) == etag
    multi = _MULTI.fullmatch(etag)
    if not multi:
        return None
    digest, parts = multi.group(1), int(multi.group(2))
    size = path.stat().st_size
    per_part = -(-size // parts)
    sizes = [-(-per_part // MIB) * MIB, *(n * MIB for n in PART_SIZES_MIB)]  # the even split, rounded up to MiB
    for part_size in dict.fromkeys(sizes):
        if part_size > 0 and -(-size // part_size) == parts and _md5_parts(path, part_size) == (digest, parts):
            return True
    return None


def mismatch(folder: Path, listing: list[ObjectInfo], check_etags: bool) -> str | None:
    """What differs between a downloaded checkpoint ``folder`` and the store ``listing`` it came
    from (file names, sizes, and with ``check_etags`` the content digests); None when nothing does."""
    expected = {info.uri.rsplit("/", 1)[-1]: info for info in listing}
    present = {p.name for p in folder.iterdir()}
    if present != set(expected):
        extra, missing = sorted(present - set(expected)), sorted(set(expected) - present)
        return f"files differ from the store (not in the store: {extra[:5]}, missing: {missing[:5]})"
    for name, info in expected.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            return f"{name} is not a plain file"
        if path.stat().st_size != info.size:
            return f"{name} has {path.stat().st_size} bytes, the store's object {info.size}"
        if check_etags:
            matches = etag_matches(path, info.etag)
            if matches is False:
                return f"{name} does not match its object's ETag {info.etag}"
            if matches is None:
                log.warning("cannot check a cached file's content", extra={"file": name, "etag": info.etag})
    return None


def resolve_served_model(model: str, storage: Storage, cache: Path, keep: int, check_etags: bool) -> Path:
    """``mvp.model.resolve.resolve_model`` for `mvp serve`: an ``s3://`` checkpoint is taken from
    the private ``cache`` only while it matches the store; a cached copy that does not is removed
    and downloaded again, and a fresh download that does not is refused (CacheError)."""
    from mvp.model.resolve import resolve_model

    if not is_s3(model):
        return resolve_model(model, storage, cache, keep=keep)
    private_dir(cache)
    path = resolve_model(model, storage, cache, keep=keep)
    problem = mismatch(path, list(storage.list(model.rstrip("/") + "/")), check_etags)
    if problem is None:
        return path
    log.warning("cached checkpoint does not match the store", extra={"path": str(path), "problem": problem})
    shutil.rmtree(path)
    path = resolve_model(model, storage, cache, keep=keep)  # downloads it again
    problem = mismatch(path, list(storage.list(model.rstrip("/") + "/")), check_etags)
    if problem is not None:
        shutil.rmtree(path)
        raise CacheError(
            f"{model}: the download does not match the store's listing ({problem}); if the store's ETags are not "
            "content MD5s (SSE-C/SSE-KMS), set --no-cache-verify-etags"
        )
    return path
