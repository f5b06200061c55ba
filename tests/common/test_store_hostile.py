"""The embedded store as a hostile process on loopback meets it (issue #30 items 1 and 6): every
request must be signed (AWS Signature V4) with the store's access keys, and a bucket or object name
the store could not load back from its data folder is refused at the request, so no request can
brick the next start; a bad entry planted in the data folder is skipped, never fatal."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minio.credentials import Credentials
from minio.signer import sign_v4_s3

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage, StorageError
from mvp.common.store.cli import object_path
from tests.procs import Proc, free_port, start, wait_for

pytestmark = pytest.mark.integration

KEY, SECRET = "hostile-test-key", "hostile-test-secret"
ENV = {"MVP_S3_ACCESS_KEY": KEY, "MVP_S3_SECRET_KEY": SECRET}


def start_keyed_store(tmp: Path, data_dir: Path) -> Proc:
    """A store that accepts only KEY/SECRET (the environment its clients read them from too)."""
    port = free_port()
    args = ["store", "serve", "--port", str(port), "--buckets", "mvp", "--data-dir", str(data_dir)]
    proc = start(args, tmp / f"store-{port}.log", ENV)
    proc.ports = {"s3": port}
    wait_for(lambda: "object store listening" in proc.log(), 60, "object store", proc.popen)
    return proc


def storage(store: Proc, key: str = KEY, secret: str = SECRET) -> Storage:
    endpoint = f"http://127.0.0.1:{store.ports['s3']}"
    return Storage(StoreSettings(endpoint=endpoint, access_key=key, secret_key=secret))


def s3(
    store: Proc,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    sign: tuple[str, str] | None = (KEY, SECRET),
    date: datetime | None = None,
    signed_sha256: str | None = None,
) -> tuple[int, str]:
    """One raw HTTP request, sent exactly as written (no client-side name checks), SigV4-signed
    with ``sign`` unless it is None. Returns the status and the S3 error code ('' if none)."""
    port = store.ports["s3"]
    headers = {}
    if sign is not None:
        date = date or datetime.now(UTC)
        sha256 = signed_sha256 or hashlib.sha256(body).hexdigest()
        headers = {
            "Host": f"127.0.0.1:{port}",
            "x-amz-date": date.strftime("%Y%m%dT%H%M%SZ"),
            "x-amz-content-sha256": sha256,
        }
        url = urlsplit(f"http://127.0.0.1:{port}{path}")
        sign_v4_s3(
            method=method,
            url=url,
            region="us-east-1",
            headers=headers,
            credentials=Credentials(*sign),
            content_sha256=sha256,
            date=date,
        )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
    finally:
        conn.close()
    code = re.search(r"<Code>([^<]*)</Code>", text)
    return resp.status, code.group(1) if code else ""


def kill_and_restart(store: Proc, tmp: Path, data_dir: Path) -> Proc:
    store.popen.send_signal(signal.SIGKILL)
    store.popen.wait(10)
    return start_keyed_store(tmp, data_dir)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("hostile-store")
    proc = start_keyed_store(tmp, tmp / "data")
    storage(proc).put_bytes("s3://mvp/secret.txt", b"only for key holders")
    yield proc
    proc.stop()


# Every kind of request: list buckets, object GET/PUT, a bucket's versioning, a new bucket, and
# moto's own control API (its reset would wipe every object in memory).
REQUESTS = [
    ("GET", "/"),
    ("GET", "/mvp/secret.txt"),
    ("PUT", "/mvp/planted.txt"),
    ("GET", "/mvp?versioning"),
    ("PUT", "/mvp?versioning"),
    ("PUT", "/planted-bucket"),
    ("POST", "/moto-api/reset"),
    ("GET", "/moto-api/data.json"),
]


@pytest.mark.parametrize(
    ("sign", "status", "code"),
    [
        (None, 403, "AccessDenied"),
        (("someone-else", SECRET), 403, "InvalidAccessKeyId"),
        ((KEY, "a-guessed-secret"), 403, "SignatureDoesNotMatch"),
    ],
    ids=["unsigned", "wrong-key", "wrong-secret"],
)
def test_requests_without_the_store_keys_are_refused(store: Proc, sign, status: int, code: str) -> None:
    for method, path in REQUESTS:
        assert s3(store, method, path, b"planted", sign=sign) == (status, code), (method, path)
    reader = storage(store)
    assert reader.get_bytes("s3://mvp/secret.txt") == b"only for key holders"  # moto-api/reset did nothing
    assert not reader.exists("s3://mvp/planted.txt")
    assert not reader.bucket_exists("planted-bucket")


def test_the_sdk_with_other_keys_is_refused_and_with_the_right_ones_served(store: Proc) -> None:
    with pytest.raises(StorageError, match="InvalidAccessKeyId"):
        storage(store, "minioadmin", "minioadmin").get_bytes("s3://mvp/secret.txt")
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        storage(store, KEY, "wrong").put_bytes("s3://mvp/planted.txt", b"x")
    big = os.urandom(11 << 20)  # multipart: the SDK signs each part
    storage(store).put_bytes("s3://mvp/signed/big.bin", big)
    assert storage(store).get_bytes("s3://mvp/signed/big.bin") == big
    assert [i.uri for i in storage(store).list("s3://mvp/signed/")] == ["s3://mvp/signed/big.bin"]


def test_a_signature_does_not_cover_another_body_or_time(store: Proc) -> None:
    signed_for = hashlib.sha256(b"what was signed").hexdigest()
    assert s3(store, "PUT", "/mvp/swapped.txt", b"another body", signed_sha256=signed_for) == (
        400,
        "XAmzContentSHA256Mismatch",
    )
    old = datetime.now(UTC) - timedelta(hours=1)
    assert s3(store, "PUT", "/mvp/replayed.txt", b"x", date=old) == (403, "RequestTimeTooSkewed")
    assert not storage(store).exists("s3://mvp/swapped.txt")
    assert not storage(store).exists("s3://mvp/replayed.txt")
    assert s3(store, "PUT", "/mvp/fresh.txt", b"x") == (200, "")


def test_presigned_urls_are_checked(store: Proc) -> None:
    client = storage(store).client
    url = client.presigned_get_object("mvp", "secret.txt", expires=timedelta(minutes=5))
    assert urllib.request.urlopen(url, timeout=10).read() == b"only for key holders"
    for bad, code in (
        (url.replace("/secret.txt?", "/fresh.txt?"), "SignatureDoesNotMatch"),  # another object
        (
            client.presigned_get_object(
                "mvp", "secret.txt", expires=timedelta(seconds=60), request_date=datetime.now(UTC) - timedelta(hours=1)
            ),
            "AccessDenied",  # expired
        ),
    ):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 403 and f"<Code>{code}</Code>" in err.value.read().decode()


BAD_BUCKETS = ["/UPPER", "/x_y", "/%2e%2e", "/ab", "/a..b", "/-dash", "/192.168.1.1", "/" + "b" * 64]
BAD_KEYS = [
    "/mvp/./x",
    "/mvp/a/../b",
    "/mvp/%2e%2e/x",
    "/mvp/a/%2E",
    "/mvp/" + "s" * 300,
    "/mvp/" + "/".join(["k" * 200] * 6),  # over S3's 1,024 bytes
]


def test_names_the_store_could_not_load_again_are_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = start_keyed_store(tmp_path, data_dir)
    try:
        assert s3(store, "PUT", "/mvp/kept.txt", b"kept") == (200, "")
        for path in BAD_BUCKETS:
            assert s3(store, "PUT", path) == (400, "InvalidBucketName"), path
        for path in BAD_KEYS:
            status, code = s3(store, "PUT", path, b"x")
            assert status == 400 and code in ("XMinioInvalidObjectName", "KeyTooLongError"), (path, status, code)
            status, code = s3(store, "POST", path + "?uploads=")  # a multipart upload is refused at its start
            assert status == 400 and code in ("XMinioInvalidObjectName", "KeyTooLongError"), (path, status, code)
        assert sorted(p.name for p in data_dir.iterdir() if not p.name.startswith(".")) == ["mvp"]
        store = kill_and_restart(store, tmp_path, data_dir)
        reader = storage(store)
        assert reader.get_bytes("s3://mvp/kept.txt") == b"kept"
        assert [b.name for b in reader.client.list_buckets()] == ["mvp"]
        assert [i.uri for i in reader.list("s3://mvp/")] == ["s3://mvp/kept.txt"]
    finally:
        store.stop()


def test_a_bad_entry_in_the_data_folder_is_skipped_not_fatal(tmp_path: Path) -> None:
    """A data folder written by an older store (or by hand) may hold entries no request can
    produce any more: each is logged and skipped, and the store starts with everything else."""
    data_dir = tmp_path / "data"
    planted = {
        data_dir / "UPPER" / "x.txt": b"bad bucket",
        data_dir / "x_y" / "y.txt": b"bad bucket",
        data_dir / "mvp" / "a" / "%D" / "x": b"key a/./x",
        data_dir / "mvp" / "%DD": b"key ..",
        data_dir / "mvp" / "odd%escape": b"not a name the store writes",
        data_dir / "stray-file": b"not a bucket",
    }
    for path, data in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    good = object_path(data_dir, "mvp", "ckpt/model.part")
    good.parent.mkdir(parents=True)
    good.write_bytes(b"good")
    store = start_keyed_store(tmp_path, data_dir)
    try:
        reader = storage(store)
        assert [i.uri for i in reader.list("s3://mvp/")] == ["s3://mvp/ckpt/model.part"]
        assert [b.name for b in reader.client.list_buckets()] == ["mvp"]
        log = store.log()
        for name in ("UPPER", "x_y", "a/./x", "odd%escape", "stray-file"):
            assert "skipping" in log and name in log, name
    finally:
        store.stop()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab.%/\x00é"), max_size=12) | st.text(max_size=300), max_size=4))
def test_every_key_the_store_accepts_loads_back_as_itself(parts: list[str]) -> None:
    """The load is the inverse of the write for every accepted key: its path stays inside the
    bucket's folder, each file name fits a file system, and the path reads back as the same key."""
    from mvp.common.store.cli import _unsegment, key_problem

    key = "/".join(parts)
    root = Path("/data")
    if not key or key_problem(key):
        return
    path = object_path(root, "mvp", key)
    assert root / "mvp" in path.parents
    assert all(len(os.fsencode(p)) <= 255 for p in path.relative_to(root / "mvp").parts)
    assert "/".join(_unsegment(p) for p in path.relative_to(root / "mvp").parts) == key
