"""Who sent an OSS request: the local OSS's signature checks (V4 and, when allowed, V1), header or URL.

Longer than 500 lines: V1 and V4 request signatures verified as OSS computes them (header, query-string and
presigned forms), each rule cited to its doc page.

:class:`OssAuthenticator` owns authentication; ``responses.py`` calls :meth:`OssAuthenticator.authenticate`
once per request, before the operation, and answers the :class:`~.exceptions.OssError` it raises.

Signatures, recomputed as ``oss2`` 2.19.1 computes them (``oss2/auth.py``):

V4 (``oss2.ProviderAuthV4``/``oss2.AuthV4``; ``Bucket(..., region=...)``), the only scheme a new bucket
accepts: ``Authorization: OSS4-HMAC-SHA256 Credential=<AK>/<yyyymmdd>/<region>/oss/aliyun_v4_request,
Signature=<hex>[, AdditionalHeaders=a;b]``::

    CanonicalRequest = VERB \\n uri_encode('/<bucket>/<key>', keep '/') \\n sorted encoded query \\n
                       sorted 'name:value\\n' of x-oss-*, content-type, content-md5 and the additional
                       headers \\n additional headers ';'-joined \\n x-oss-content-sha256 (UNSIGNED-PAYLOAD)
    StringToSign     = "OSS4-HMAC-SHA256\\n" x-oss-date \\n scope \\n hex(sha256(CanonicalRequest))
    SigningKey       = hmac chain of "aliyun_v4"+secret over date, region, "oss", "aliyun_v4_request"

A V4 signed URL (``bucket.sign_url`` with V4 auth) carries ``x-oss-signature-version``, ``x-oss-credential``,
``x-oss-date``, ``x-oss-expires``, ``x-oss-signature`` (and ``x-oss-additional-headers``,
``x-oss-security-token``) in the query: the canonical query is every parameter but ``x-oss-signature``,
the payload hash ``UNSIGNED-PAYLOAD`` (``ProviderAuthV4._sign_url``). Documented: "(Recommended) V4
signatures in presigned URLs", https://www.alibabacloud.com/help/en/oss/developer-reference/add-signatures-to-urls

V1 (``oss2.Auth``, ``oss2.StsAuth``, ``oss2.ProviderAuth``): ``Authorization: OSS <AccessKeyId>:<Signature>``
::

    StringToSign = VERB \\n Content-MD5 \\n Content-Type \\n Date \\n
                   CanonicalizedOSSHeaders + CanonicalizedResource
    Signature    = base64(hmac_sha1(secret, StringToSign))

``Date`` is ``x-oss-date`` if present, else ``Date``; CanonicalizedOSSHeaders are the ``x-oss-*`` headers,
lower-cased, sorted, ``name:value\\n``; CanonicalizedResource is ``/<bucket>/<raw key>`` (``/`` for the
service) plus the sub-resources of :data:`SUBRESOURCES` present in the query, sorted, ``?k=v&k2``. V1
signed URLs carry ``OSSAccessKeyId``, ``Expires`` (in place of Date) and ``Signature`` in the query.

V1 is refused by default, as OSS refuses it for accounts created since 2025-03-01 and buckets created since
2025-09-01 ("Guide to upgrading from Signature V1 to Signature V4",
https://www.alibabacloud.com/help/en/oss/developer-reference/guidelines-for-upgrading-v1-signatures-to-v4-signatures ;
EC 0002-00000080, https://help.aliyun.com/en/oss/user-guide/0002-00000080: "OSS returns a 403 error when you
call an API operation signed with a V1 signature"). ``allow_v1_signatures=True`` is an old bucket.
ASSUMPTION: the error ``Code`` of that 403 — the EC page names only the status; the emulator answers
``AccessDenied`` with ``<EC>0002-00000080</EC>``, before looking at the key or the signature (strict: a V1
request is refused whether or not it is correct).

Other documented V4 failures, with their EC page (the ``Code`` element is an ASSUMPTION where the page
shows none): a region in the scope that is not the bucket's -> 403 ``SignatureDoesNotMatch``, EC
0002-00000228; a malformed ``Credential`` -> 400 ``InvalidArgument``, EC 0002-00000213 (header) /
0002-00000224 (URL); a signed URL without ``x-oss-expires`` -> EC 0002-00000215, with one outside
1..604800 s -> EC 0002-00000232, used after it expired -> 403 ``AccessDenied`` "Request has expired.", EC
0002-00000236, used more than 15 minutes before its ``x-oss-date`` -> EC 0002-00000235 (ASSUMPTION: 403
``AccessDenied``; the page names no code; https://help.aliyun.com/en/oss/user-guide/0002-00000235); a URL
without ``x-oss-signature`` -> EC 0002-00000219, with an empty one -> EC 0002-00000220;
an ``x-oss-content-sha256`` header that is not ``UNSIGNED-PAYLOAD`` -> 400 ``InvalidArgument``, EC
0002-00000214 (ASSUMPTION: a missing one too; ``oss2`` always sends it). The clock check (15 minutes,
RequestTimeTooSkewed) follows a matching signature. V2
(``OSS2 ...``) is answered 501 NotImplemented (an emulator limit, not the service's).
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import time
from urllib.parse import parse_qsl, quote

from alibaba_localcloud._accounts import Account
from alibaba_localcloud._http import RequestHead

from . import exceptions as exc
from .models import OssBackend, iso8601

V4_ALGORITHM = "OSS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_V4_URL_EXPIRES = 7 * 24 * 3600  # x-oss-expires: 1..604800 s (EC 0002-00000232)
EC_V1_REFUSED = "0002-00000080"
EC_V4_WRONG_REGION = "0002-00000228"
EC_V4_BAD_CREDENTIAL = "0002-00000213"
EC_V4_URL_BAD_CREDENTIAL = "0002-00000224"
EC_V4_URL_NO_EXPIRES = "0002-00000215"
EC_V4_URL_BAD_EXPIRES = "0002-00000232"
EC_V4_URL_EXPIRED = "0002-00000236"
EC_V4_URL_NOT_YET_VALID = "0002-00000235"
V4_URL_EARLY = 15 * 60  # a URL may be used this long before its x-oss-date (clock offsets), not longer
EC_V4_CONTENT_SHA256 = "0002-00000214"
EC_V4_URL_NO_SIGNATURE = "0002-00000219"
EC_V4_URL_EMPTY_SIGNATURE = "0002-00000220"

#: The V1 sub-resources that enter the CanonicalizedResource: ``oss2.auth.ProviderAuth._subresource_key_set``
#: (2.19.1), which is the SDK's copy of the service's list.
SUBRESOURCES = frozenset(
    [
        "response-content-type",
        "response-content-language",
        "response-cache-control",
        "logging",
        "response-content-encoding",
        "acl",
        "uploadId",
        "uploads",
        "partNumber",
        "group",
        "link",
        "delete",
        "website",
        "location",
        "objectInfo",
        "objectMeta",
        "response-expires",
        "response-content-disposition",
        "cors",
        "lifecycle",
        "restore",
        "qos",
        "referer",
        "stat",
        "bucketInfo",
        "append",
        "position",
        "security-token",
        "live",
        "comp",
        "status",
        "vod",
        "startTime",
        "endTime",
        "x-oss-process",
        "symlink",
        "callback",
        "callback-var",
        "tagging",
        "encryption",
        "versions",
        "versioning",
        "versionId",
        "policy",
        "requestPayment",
        "x-oss-traffic-limit",
        "qosInfo",
        "asyncFetch",
        "x-oss-request-payer",
        "sequential",
        "inventory",
        "inventoryId",
        "continuation-token",
        "worm",
        "wormId",
        "wormExtend",
        "replication",
        "replicationLocation",
        "replicationProgress",
        "transferAcceleration",
        "cname",
        "metaQuery",
        "x-oss-ac-source-ip",
        "x-oss-ac-subnet-mask",
        "x-oss-ac-vpc-id",
        "x-oss-ac-forward-allow",
        "resourceGroup",
        "style",
        "styleName",
        "x-oss-async-process",
        "regionList",
        "x-oss-write-get-object-response",
        "bucketArchiveDirectRead",
        "httpsConfig",
        "redundancyTransition",
        "x-oss-target-redundancy-type",
        "x-oss-redundancy-transition-taskid",
        "accessPoint",
        "accessPointPolicy",
        "publicAccessBlock",
        "x-oss-access-point-name",
        "requesterQosInfo",
        "qosRequester",
        "resourcePoolInfo",
        "resourcePool",
        "resourcePoolBuckets",
    ]
)


# --- signatures (pure) -----------------------------------------------------------------------------------
def query_params(request: RequestHead) -> dict[str, str]:
    """Query parameters as the SDK meant them ('+' is a space; on a repeated key the last one wins)."""
    return dict(parse_qsl(request.query_string, keep_blank_values=True))


def _latin1(value: str) -> bytes:
    """A header value as it was on the wire (http.server decodes header bytes as ISO-8859-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def canonical_resource(bucket: str | None, key: str | None, params: dict[str, str]) -> str:
    resource = f"/{bucket}/{key or ''}" if bucket else "/"
    sub = sorted((name, value) for name, value in params.items() if name in SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{name}={value}" if value else name for name, value in sub)
    return resource


def v1_string_to_sign(request: RequestHead, bucket: str | None, key: str | None, date: str) -> bytes:
    oss_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        lower = name.lower()
        if lower.startswith("x-oss-"):
            oss_headers.setdefault(lower, []).append(value)
    canonical = b"".join(
        name.encode("ascii") + b":" + _latin1(",".join(values)) + b"\n"
        for name, values in sorted(oss_headers.items())
    )
    return b"\n".join(
        [
            request.method.encode("ascii"),
            _latin1(request.header("content-md5") or ""),
            _latin1(request.header("content-type") or ""),
            _latin1(date),
            canonical + canonical_resource(bucket, key, query_params(request)).encode("utf-8"),
        ]
    )


def v1_signature(secret: str, string_to_sign: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def v4_uri_encode(text: str, *, keep_slash: bool) -> str:
    safe = "-_.~/" if keep_slash else "-_.~"
    return quote(text.encode("utf-8"), safe=safe)


def v4_canonical_request(
    request: RequestHead,
    bucket: str | None,
    key: str | None,
    additional: list[str],
    *,
    exclude_params: frozenset[str] = frozenset(),
) -> bytes:
    uri = v4_uri_encode(f"/{bucket}/{key or ''}" if bucket else "/", keep_slash=True)
    encoded = sorted(
        (v4_uri_encode(k, keep_slash=False), v4_uri_encode(v, keep_slash=False))
        for k, v in query_params(request).items()
        if k not in exclude_params
    )
    query = "&".join(f"{k}={v}" if v else k for k, v in encoded)
    wanted = set(additional) | {"content-type", "content-md5"}
    signed: list[tuple[str, str]] = sorted(
        (name.lower(), value)
        for name, value in request.headers
        if name.lower().startswith("x-oss-") or name.lower() in wanted
    )
    headers = b"".join(name.encode("ascii") + b":" + _latin1(value) + b"\n" for name, value in signed)
    payload = request.header("x-oss-content-sha256") or UNSIGNED_PAYLOAD
    return b"\n".join(
        [
            request.method.encode("ascii"),
            uri.encode("ascii"),
            query.encode("ascii"),
            headers,
            ";".join(sorted(additional)).encode("ascii"),
            _latin1(payload),
        ]
    )


def v4_signature(secret: str, date_time: str, scope: str, canonical_request: bytes) -> tuple[str, str]:
    """(hex signature, string to sign)."""
    digest = hashlib.sha256(canonical_request).hexdigest()
    string_to_sign = "\n".join([V4_ALGORITHM, date_time, scope, digest])
    _, region, product, _ = scope.split("/", 3)
    key = ("aliyun_v4" + secret).encode("utf-8")
    for part in (date_time[:8], region, product, "aliyun_v4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest(), string_to_sign


def _hex_bytes(data: bytes) -> str:
    return " ".join(f"{byte:02x}" for byte in data)


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _v4_time(date_time: str) -> float:
    """Seconds since the epoch of an ``x-oss-date`` (``yyyymmddTHHMMSSZ``); AccessDenied when malformed."""
    try:
        return calendar.timegm(time.strptime(date_time, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise exc.AccessDenied("OSS authentication requires a valid Date.") from None


# --- the check ---------------------------------------------------------------------------------------------
class OssAuthenticator:
    """The account a request is signed by, or the OSS error that refuses it.

    ``allow_v1_signatures`` False (the default) is a bucket created since 2025-09-01: any V1 signature is
    403 AccessDenied (EC 0002-00000080); True is an old bucket that still accepts V1.
    """

    def __init__(self, backend: OssBackend, *, allow_v1_signatures: bool = False) -> None:
        self.backend = backend
        self.allow_v1_signatures = allow_v1_signatures

    def authenticate(self, request: RequestHead, bucket: str | None, key: str | None) -> Account:
        authorization = request.header("authorization")
        params = query_params(request)
        if not authorization:
            if "OSSAccessKeyId" in params and "Signature" in params:
                self._refuse_v1("a V1 signed URL (OSSAccessKeyId, Expires, Signature)")
                return self._authenticate_v1_url(request, bucket, key, params)
            if "x-oss-signature" in params or "x-oss-credential" in params:
                return self._authenticate_v4_url(request, bucket, key, params)
            raise exc.AccessDenied()  # anonymous access to a private bucket
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme == "OSS":
            self._refuse_v1("a V1 Authorization header (OSS AccessKeyId:Signature)")
            return self._authenticate_v1(request, bucket, key, credentials)
        if scheme == V4_ALGORITHM:
            return self._authenticate_v4(request, bucket, key, credentials)
        if scheme == "OSS2":
            raise exc.NotImplementedByEmulator(
                "The local OSS checks V4 (and, when allowed, V1) signatures only."
            )
        raise exc.InvalidArgument("Authorization header is invalid.", ArgumentName="Authorization")

    def _refuse_v1(self, what: str) -> None:
        if not self.allow_v1_signatures:
            raise exc.AccessDenied(
                f"The request is signed with {what}; this bucket accepts V4 signatures only "
                "(OSS4-HMAC-SHA256 with the bucket's region). Sign with V4: oss2.ProviderAuthV4 and "
                "oss2.Bucket(..., region=...).",
                EC=EC_V1_REFUSED,
            )

    # --- V1 ---------------------------------------------------------------------------------------------
    def _authenticate_v1(
        self, request: RequestHead, bucket: str | None, key: str | None, credentials: str
    ) -> Account:
        access_key_id, sep, signature = credentials.strip().rpartition(":")
        if not sep or not access_key_id:
            raise exc.InvalidArgument("Authorization header is invalid.", ArgumentName="Authorization")
        account = self._account(access_key_id, request.header("x-oss-security-token"))
        date = request.header("x-oss-date") or request.header("date") or ""
        string_to_sign = v1_string_to_sign(request, bucket, key, date)
        self._compare(
            v1_signature(account.access_key_secret, string_to_sign), signature, access_key_id, string_to_sign
        )
        self._check_http_date(date)
        return account

    def _authenticate_v1_url(
        self, request: RequestHead, bucket: str | None, key: str | None, params: dict[str, str]
    ) -> Account:
        access_key_id = params["OSSAccessKeyId"]
        account = self._account(access_key_id, params.get("security-token"))
        expires = params.get("Expires", "")
        string_to_sign = v1_string_to_sign(request, bucket, key, expires)
        self._compare(
            v1_signature(account.access_key_secret, string_to_sign),
            params["Signature"],
            access_key_id,
            string_to_sign,
        )
        try:
            expires_at = int(expires)
        except ValueError:
            raise exc.AccessDenied("Invalid argument Expires.", Expires=expires) from None
        now = self.backend.clock()
        if now > expires_at:
            raise exc.AccessDenied(
                "Request has expired.", Expires=http_date(expires_at), ServerTime=http_date(now)
            )
        return account

    # --- V4 ---------------------------------------------------------------------------------------------
    def _scope(self, credential: str, ec: str, argument: str) -> tuple[str, str, list[str]]:
        """(access key id, scope, scope parts) of ``AK/date/region/oss/aliyun_v4_request``."""
        parts = credential.split("/")
        if len(parts) != 5 or not parts[0] or parts[3:] != ["oss", "aliyun_v4_request"]:
            raise exc.InvalidArgument(
                f"{argument} is invalid: expected <AccessKeyId>/<yyyymmdd>/<region>/oss/aliyun_v4_request.",
                ArgumentName=argument,
                EC=ec,
            )
        return parts[0], "/".join(parts[1:]), parts

    def _check_scope(self, parts: list[str], date_time: str, access_key_id: str) -> None:
        if date_time[:8] != parts[1]:
            raise exc.SignatureDoesNotMatch(
                "Invalid date in the Credential scope.", OSSAccessKeyId=access_key_id
            )
        if parts[2] != self.backend.region_id:
            raise exc.SignatureDoesNotMatch(
                f"Invalid signing region {parts[2]!r}: the bucket is in {self.backend.region_id!r}; sign "
                "with the bucket's region id.",
                OSSAccessKeyId=access_key_id,
                EC=EC_V4_WRONG_REGION,
            )

    def _authenticate_v4(
        self, request: RequestHead, bucket: str | None, key: str | None, credentials: str
    ) -> Account:
        fields: dict[str, str] = {}
        for part in credentials.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value.strip()
        signature = fields.get("Signature", "")
        access_key_id, scope, parts = self._scope(
            fields.get("Credential", ""), EC_V4_BAD_CREDENTIAL, "Authorization"
        )
        if not signature:
            raise exc.InvalidArgument("Authorization header is invalid.", ArgumentName="Authorization")
        payload = request.header("x-oss-content-sha256")
        if payload != UNSIGNED_PAYLOAD:
            raise exc.InvalidArgument(
                f"x-oss-content-sha256 must be {UNSIGNED_PAYLOAD} with a V4 signature.",
                ArgumentName="x-oss-content-sha256",
                ArgumentValue=payload,
                EC=EC_V4_CONTENT_SHA256,
            )
        account = self._account(access_key_id, request.header("x-oss-security-token"))
        date_time = request.header("x-oss-date") or ""
        additional = [
            name.strip().lower() for name in fields.get("AdditionalHeaders", "").split(";") if name.strip()
        ]
        canonical = v4_canonical_request(request, bucket, key, additional)
        expected, string_to_sign = v4_signature(account.access_key_secret, date_time, scope, canonical)
        self._compare(
            expected,
            signature.lower(),
            access_key_id,
            string_to_sign.encode("utf-8"),
            CanonicalRequest=canonical.decode("utf-8", "replace"),
        )
        signed_at = _v4_time(date_time)
        self._check_scope(parts, date_time, access_key_id)
        self._check_skew(signed_at, date_time)
        return account

    def _authenticate_v4_url(
        self, request: RequestHead, bucket: str | None, key: str | None, params: dict[str, str]
    ) -> Account:
        version = params.get("x-oss-signature-version", "")
        if version != V4_ALGORITHM:
            raise exc.InvalidArgument(
                f"x-oss-signature-version must be {V4_ALGORITHM}.",
                ArgumentName="x-oss-signature-version",
                ArgumentValue=version,
            )
        access_key_id, scope, parts = self._scope(
            params.get("x-oss-credential", ""), EC_V4_URL_BAD_CREDENTIAL, "x-oss-credential"
        )
        signature = params.get("x-oss-signature")
        if not signature:
            raise exc.InvalidArgument(
                f"x-oss-signature is {'empty' if signature == '' else 'missing'}.",
                ArgumentName="x-oss-signature",
                EC=EC_V4_URL_EMPTY_SIGNATURE if signature == "" else EC_V4_URL_NO_SIGNATURE,
            )
        expires_text = params.get("x-oss-expires")
        if expires_text is None:
            raise exc.InvalidArgument(
                "x-oss-expires is missing.", ArgumentName="x-oss-expires", EC=EC_V4_URL_NO_EXPIRES
            )
        try:
            expires = int(expires_text)
        except ValueError:
            expires = -1
        if not 1 <= expires <= MAX_V4_URL_EXPIRES:
            raise exc.InvalidArgument(
                f"x-oss-expires must be 1 to {MAX_V4_URL_EXPIRES} seconds.",
                ArgumentName="x-oss-expires",
                ArgumentValue=expires_text,
                EC=EC_V4_URL_BAD_EXPIRES,
            )
        account = self._account(access_key_id, params.get("x-oss-security-token"))
        date_time = params.get("x-oss-date", "")
        additional = [
            name.strip().lower()
            for name in params.get("x-oss-additional-headers", "").split(";")
            if name.strip()
        ]
        canonical = v4_canonical_request(
            request, bucket, key, additional, exclude_params=frozenset({"x-oss-signature"})
        )
        expected, string_to_sign = v4_signature(account.access_key_secret, date_time, scope, canonical)
        self._compare(
            expected,
            signature.lower(),
            access_key_id,
            string_to_sign.encode("utf-8"),
            CanonicalRequest=canonical.decode("utf-8", "replace"),
        )
        signed_at = _v4_time(date_time)
        self._check_scope(parts, date_time, access_key_id)
        now = self.backend.clock()
        if now < signed_at - V4_URL_EARLY:
            raise exc.AccessDenied(
                "Request is not valid yet: it is more than 15 minutes before x-oss-date.",
                ServerTime=http_date(now),
                EC=EC_V4_URL_NOT_YET_VALID,
            )
        if now > signed_at + expires:
            raise exc.AccessDenied(
                "Request has expired.",
                Expires=http_date(signed_at + expires),
                ServerTime=http_date(now),
                EC=EC_V4_URL_EXPIRED,
            )
        return account

    # --- shared -----------------------------------------------------------------------------------------
    def _account(self, access_key_id: str, token: str | None) -> Account:
        """The account of ``access_key_id``, after its security-token check (before the signature's)."""
        account = self.backend.account(access_key_id)
        if account is None:
            raise exc.InvalidAccessKeyId(OSSAccessKeyId=access_key_id)
        if account.security_token is None:
            if token:  # OSS then treats the request as STS, and this key is not an STS key (0002-00000002)
                raise exc.InvalidAccessKeyId(OSSAccessKeyId=access_key_id)
            return account
        if not token:  # an STS key without its token (0002-00000003)
            raise exc.InvalidAccessKeyId(OSSAccessKeyId=access_key_id)
        if hmac.compare_digest(token.encode("utf-8"), account.security_token.encode("utf-8")):
            return account
        if self.backend.token_belongs_to_another_account(token, access_key_id):
            raise exc.AccessKeyIdAndSecurityTokenNotMatch(OSSAccessKeyId=access_key_id)
        raise exc.InvalidSecurityToken(OSSAccessKeyId=access_key_id)

    @staticmethod
    def _compare(
        expected: str, provided: str, access_key_id: str, string_to_sign: bytes, **details: str
    ) -> None:
        if not hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8", "replace")):
            text = string_to_sign.decode("utf-8", "replace")
            error = exc.SignatureDoesNotMatch(
                OSSAccessKeyId=access_key_id,
                SignatureProvided=provided,
                StringToSign=text,
                StringToSignBytes=_hex_bytes(string_to_sign),
            )
            for name, value in details.items():
                error.with_detail(name, value)
            raise error

    def _check_http_date(self, date: str) -> None:
        try:
            signed_at = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            raise exc.AccessDenied("OSS authentication requires a valid Date.") from None
        self._check_skew(signed_at, date)

    def _check_skew(self, signed_at: float, shown: str) -> None:
        skew = self.backend.max_clock_skew
        now = self.backend.clock()
        if skew is not None and abs(now - signed_at) > skew:
            raise exc.RequestTimeTooSkewed(
                RequestTime=shown, ServerTime=iso8601(now), MaxAllowedSkewMilliseconds=int(skew * 1000)
            )
