"""The embedded store's front door: a WSGI gate that lets a request reach moto's S3 app only if it
is signed (AWS Signature Version 4, in the Authorization header or as a presigned URL) with the
store's one access key pair, and the S3 error answers the store gives.

moto can check signatures itself (``INITIAL_NO_AUTH_ACTION_COUNT``), but only for IAM users it
created and only in the Authorization header: an unsigned request or a presigned URL (the trainer
hands those to OpenRLHF) is a KeyError and a 500 there. The gate implements the S3 flavour of SigV4
the way MinIO checks it: the path as sent, the query re-encoded and sorted, the signed headers, the
payload's SHA-256 (checked against the body) or UNSIGNED-PAYLOAD, and a request time within 15
minutes (presigned: not expired).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_input_stream

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)  # S3's RequestTimeTooSkewed bound
MAX_PRESIGN_S = 7 * 24 * 3600  # S3's longest presigned URL
UNSIGNED = "UNSIGNED-PAYLOAD"
_TIME = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r"\s+")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class S3Refusal(HTTPException):
    """A request the store answers with an S3 error (status, code, message as S3's error XML).
    Raised inside moto's app, Flask sends it as it is; the gate sends it itself."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.code = status
        self.s3_code = code
        self.message = message

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.s3_code)}</Code><Message>{escape(self.message)}</Message></Error>"
        )
        return Response(body, self.code, content_type="application/xml")


def _header(environ: dict[str, Any], name: str) -> str | None:
    if name in ("content-type", "content-length"):
        return environ.get(name.upper().replace("-", "_"))
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The query's parameters decoded (``+`` stays a plus, as S3 reads it)."""
    pairs = []
    for part in filter(None, raw_query.split("&")):
        name, _, value = part.partition("=")
        pairs.append(
            (unquote_to_bytes(name).decode(errors="replace"), unquote_to_bytes(value).decode(errors="replace"))
        )
    return pairs


def _decode(text: str) -> str:
    return unquote_to_bytes(text).decode(errors="replace")


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs if k != "X-Amz-Signature")
    return "&".join(f"{k}={v}" for k, v in encoded)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class SigV4Gate:
    """WSGI middleware: answers 403 (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch,
    RequestTimeTooSkewed) or 400 for a malformed signature before the request reaches ``app``;
    an unsigned request's body is never read."""

    def __init__(self, app: WsgiApp, access_key: str, secret_key: str) -> None:
        self.app = app
        self.access_key = access_key
        self.secret_key = secret_key

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            self.verify(environ)
        except S3Refusal as refusal:
            response = refusal.get_response()
            if environ.get("REQUEST_METHOD") == "HEAD":
                response.set_data(b"")
            return response(environ, start_response)
        environ.pop("HTTP_X_MOTO_ACCOUNT_ID", None)  # moto would serve another account's (empty) store
        return self.app(environ, start_response)

    def verify(self, environ: dict[str, Any]) -> None:
        """Raises S3Refusal unless the request is signed with the store's keys; a body whose
        SHA-256 was signed is read here and checked (then handed on)."""
        raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        if not raw.startswith("/"):  # absolute-form request target
            split = urlsplit(raw)
            raw = split.path + ("?" + split.query if split.query else "")
        path, _, raw_query = raw.partition("?")
        pairs = _query_pairs(raw_query)
        credential, signed, signature, amz_date, payload = self._signature(environ, dict(pairs))
        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request" or scope[3] != "s3" or scope[1] != amz_date[:8]:
            raise S3Refusal(
                400, "AuthorizationHeaderMalformed", "the credential must be KEY/YYYYMMDD/REGION/s3/aws4_request"
            )
        if not hmac.compare_digest(scope[0].encode(), self.access_key.encode()):
            raise S3Refusal(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            )
        names = signed.split(";")
        if "host" not in names:
            raise S3Refusal(400, "AuthorizationHeaderMalformed", "the signed headers must include host")
        values = [_header(environ, name) for name in names]
        if any(v is None for v in values):
            raise S3Refusal(403, "SignatureDoesNotMatch", "a signed header is missing from the request")
        canonical = "\n".join(
            [
                environ.get("REQUEST_METHOD", "GET"),
                path,
                _canonical_query(pairs),
                *(f"{n}:{_SPACES.sub(' ', str(v).strip())}" for n, v in zip(names, values, strict=True)),
                "",
                signed,
                payload,
            ]
        )
        digest = hashlib.sha256(canonical.encode(errors="replace")).hexdigest()
        to_sign = "\n".join([ALGORITHM, amz_date, "/".join(scope[1:]), digest])
        expected = hmac.new(_signing_key(self.secret_key, *scope[1:4]), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise S3Refusal(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
            )
        if payload != UNSIGNED:
            body = get_input_stream(environ).read()
            if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), payload.lower()):
                raise S3Refusal(
                    400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match."
                )
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("wsgi.input_terminated", None)

    def _signature(self, environ: dict[str, Any], query: dict[str, str]) -> tuple[str, str, str, str, str]:
        """(credential, signed headers, signature, request time, payload hash) from the
        Authorization header or a presigned URL's query; refuses unsigned, expired or skewed ones."""
        auth = environ.get("HTTP_AUTHORIZATION")
        now = datetime.now(UTC)
        if auth:
            if not auth.startswith(ALGORITHM + " "):
                raise S3Refusal(400, "InvalidRequest", f"only {ALGORITHM} (Signature Version 4) is accepted")
            fields = dict(
                item.strip().partition("=")[::2] for item in auth[len(ALGORITHM) + 1 :].split(",") if "=" in item
            )
            amz_date = _header(environ, "x-amz-date") or ""
            payload = _header(environ, "x-amz-content-sha256")
            if not payload:
                raise S3Refusal(400, "InvalidRequest", "missing required header x-amz-content-sha256")
            if payload.startswith("STREAMING-"):
                raise S3Refusal(501, "NotImplemented", "streaming (aws-chunked) signatures are not accepted")
            if abs(now - self._time(amz_date)) > MAX_SKEW:
                raise S3Refusal(
                    403, "RequestTimeTooSkewed", "the request time differs from the store's by more than 15 minutes"
                )
            return (
                fields.get("Credential", ""),
                fields.get("SignedHeaders", ""),
                fields.get("Signature", ""),
                amz_date,
                payload,
            )
        if "X-Amz-Algorithm" in query or "X-Amz-Credential" in query:
            if query.get("X-Amz-Algorithm") != ALGORITHM:
                raise S3Refusal(400, "AuthorizationQueryParametersError", f"X-Amz-Algorithm must be {ALGORITHM}")
            amz_date, expires = query.get("X-Amz-Date", ""), query.get("X-Amz-Expires", "")
            if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGN_S:
                raise S3Refusal(
                    400, "AuthorizationQueryParametersError", f"X-Amz-Expires must be 1 to {MAX_PRESIGN_S} seconds"
                )
            when = self._time(amz_date)
            if now > when + timedelta(seconds=int(expires)):
                raise S3Refusal(403, "AccessDenied", "Request has expired")
            if when - now > MAX_SKEW:
                raise S3Refusal(403, "AccessDenied", "Request is not valid yet")
            signed = (query.get(k, "") for k in ("X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature"))
            return (*signed, amz_date, UNSIGNED)  # type: ignore[return-value]
        raise S3Refusal(
            403, "AccessDenied", "Access Denied: sign every request (AWS Signature V4) with the store's access keys"
        )

    @staticmethod
    def _time(amz_date: str) -> datetime:
        try:
            return datetime.strptime(amz_date, _TIME).replace(tzinfo=UTC)
        except ValueError:
            raise S3Refusal(403, "AccessDenied", "a valid x-amz-date (YYYYMMDDTHHMMSSZ) is required") from None
