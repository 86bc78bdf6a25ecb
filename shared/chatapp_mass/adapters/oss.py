"""Recipient files in OSS, through the official ``oss2`` SDK, wrapped once.

``oss://BUCKET/KEY`` names an object. The object is streamed (never downloaded whole): ``open()`` yields a
binary file-like object that the CSV reader consumes line by line.

- Endpoint: ``CHATAPP_OSS_ENDPOINT`` (``http://127.0.0.1:PORT`` for the local cloud), else the region's
  public endpoint ``https://oss-REGION.aliyuncs.com`` (inside Function Compute set the internal one,
  ``https://oss-REGION-internal.aliyuncs.com``, to keep traffic off the internet).
- Region (V4 signatures are scoped to the bucket's region): ``CHATAPP_OSS_REGION``, else the one named by
  the endpoint (``oss-REGION[-internal].aliyuncs.com``), else ``FC_REGION`` (set by Function Compute),
  else ``ALIBABA_CLOUD_REGION_ID`` (with no endpoint set, the default endpoint's region). A custom endpoint
  (loopback, a CNAME) with none of these set is an :class:`OptionsError` naming ``CHATAPP_OSS_REGION``.
- Credentials: the Alibaba Cloud default chain (FC's role STS variables included), refreshed as they
  expire, or explicit ones from the composition root.
- Signatures: **V4** (``oss2.ProviderAuthV4`` + ``oss2.Bucket(..., region=...)``, ``OSS4-HMAC-SHA256``).
  OSS refuses V1 for accounts created since 2025-03-01 and buckets created since 2025-09-01 (403;
  "Guide to upgrading from Signature V1 to Signature V4", alibabacloud.com/help/en/oss/developer-reference/
  guidelines-for-upgrading-v1-signatures-to-v4-signatures, EC 0002-00000080).

  Decision: stay on ``oss2`` (>= 2.18.4 signs V4; the guide lists "Python V1: version 2.18.4 and later")
  rather than move to ``alibabacloud-oss-v2`` (V4 by default). ``oss2`` is already a pinned dependency,
  wrapped once here; the change is two arguments, the streaming ``get_object`` the CSV reader relies on
  stays as it is, the tests and the emulator already speak it, and FC code packages do not grow by a
  second OSS SDK. What ``oss2`` lacks is only a default of V4, which this module supplies. Revisit if
  ``oss2`` stops being maintained.
- A missing object or bucket, or a refused request, raises :class:`SourceError` naming the URL and what
  to do; the CLI reports it like an unreadable file (exit 2, nothing sent).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from chatapp_mass.core.errors import ChatAppMassError, OptionsError
from chatapp_mass.runtime import env


class SourceError(ChatAppMassError):
    """The recipient file could not be read from where it was said to be.

    ``code`` is OSS's error code ("" when OSS could not be reached); ``permanent`` says whether trying again
    later could help (a missing object or a refusal will not; an unreachable or busy service may).
    """

    PERMANENT = frozenset(
        {
            "NoSuchKey",
            "NoSuchBucket",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidObjectName",
        }
    )

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        return self.code in self.PERMANENT


@dataclass(frozen=True)
class OssLocation:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"oss://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, url: str) -> OssLocation:
        if not url.startswith("oss://"):
            raise OptionsError(f"{url!r}: an OSS object is oss://BUCKET/KEY")
        bucket, _, key = url[len("oss://") :].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise OptionsError(
                f"{url!r}: give the bucket and the object key, e.g. oss://my-bucket/lists/march.csv"
            )
        return cls(bucket, unquote(key) if "%" in key else key)


def oss_endpoint(environ: Mapping[str, str] = os.environ) -> str:
    endpoint = environ.get(env.CHATAPP_OSS_ENDPOINT, "").strip()
    if endpoint:
        return endpoint.rstrip("/")
    region = environ.get(env.ALIBABA_CLOUD_REGION_ID) or env.DEFAULT_REGION
    return f"https://oss-{region}.aliyuncs.com"


# oss-cn-hangzhou.aliyuncs.com, oss-ap-southeast-1-internal.aliyuncs.com, BUCKET.oss-REGION.aliyuncs.com;
# not the global acceleration endpoints (oss-accelerate[-overseas].aliyuncs.com), which name no region.
_REGIONAL_HOST = re.compile(r"(?:^|\.)oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")


def region_of_endpoint(endpoint: str) -> str:
    """The region an OSS endpoint names (``https://oss-cn-hangzhou-internal.aliyuncs.com`` -> ``cn-hangzhou``),
    or "" when it names none (loopback, a CNAME, an acceleration endpoint)."""
    host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    match = _REGIONAL_HOST.search(host.lower())
    if not match or match.group(1).startswith("accelerate"):
        return ""
    return match.group(1)


def oss_region(environ: Mapping[str, str] = os.environ, endpoint: str | None = None) -> str:
    """The region V4 signatures are scoped to (see the module doc for the order)."""
    explicit = environ.get(env.CHATAPP_OSS_REGION, "").strip()
    if explicit:
        return explicit
    endpoint = endpoint if endpoint is not None else oss_endpoint(environ)
    named = region_of_endpoint(endpoint)
    if named:
        return named
    region = (environ.get(env.FC_REGION) or environ.get(env.ALIBABA_CLOUD_REGION_ID) or "").strip()
    if region:
        return region
    raise OptionsError(
        f"OSS endpoint {endpoint!r} names no region, and OSS signs requests (V4) for the bucket's region: "
        f"set {env.CHATAPP_OSS_REGION} to the bucket's region id (e.g. ap-southeast-1), or "
        f"{env.ALIBABA_CLOUD_REGION_ID}"
    )


def _default_chain_provider() -> Any:
    from alibabacloud_credentials.client import Client as CredentialClient
    from oss2.credentials import Credentials, CredentialsProvider

    chain = CredentialClient()

    class _ChainProvider(CredentialsProvider):  # type: ignore[misc]
        def get_credentials(self) -> Any:
            current = chain.get_credential()
            return Credentials(current.access_key_id, current.access_key_secret, current.security_token or "")

    return _ChainProvider()


class OssClient:
    """One ``oss2`` auth per process; one ``oss2.Bucket`` per bucket name.

    The settings are checked when the client is built; ``oss2`` (with ``aliyunsdkcore`` and ``pycryptodome``,
    the heaviest SDK after Tablestore's: ``bench/bench_coldstart.py``) is imported, and the auth built, on first
    use: a function instance builds this client once, and most sender and api invocations never touch OSS."""

    def __init__(
        self,
        endpoint: str,
        *,
        region: str,
        access_key_id: str = "",
        access_key_secret: str = "",
        security_token: str = "",
        connect_timeout: float = 10.0,
    ) -> None:
        if not region or not region.strip():
            raise OptionsError(
                f"OSS endpoint {endpoint!r}: give the bucket's region ({env.CHATAPP_OSS_REGION}); "
                "V4 signatures are scoped to it"
            )
        self.endpoint = endpoint
        self.region = region.strip()
        self.connect_timeout = connect_timeout
        self._keys = (access_key_id, access_key_secret, security_token or "")
        self._auth: Any = None
        self._buckets: dict[str, Any] = {}

    def _auth_v4(self) -> Any:
        if self._auth is None:
            import oss2

            access_key_id, access_key_secret, security_token = self._keys
            if access_key_id:
                provider = oss2.credentials.StaticCredentialsProvider(
                    access_key_id, access_key_secret, security_token
                )
            else:
                provider = _default_chain_provider()
            self._auth = oss2.ProviderAuthV4(provider)
        return self._auth

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **keys: Any) -> OssClient:
        """Endpoint and region from the environment; ``keys``: explicit credentials (else the default chain)."""
        endpoint = oss_endpoint(environ)
        return cls(endpoint, region=oss_region(environ, endpoint), **keys)

    def bucket(self, name: str) -> Any:
        import oss2

        if name not in self._buckets:
            # enable_crc=False: oss2 only compares the CRC in get_object_to_file, yet computes it on every
            # streamed read and upload; without crcmod's C extension (FC's runtime) that is ~5 MB/s of CPU.
            self._buckets[name] = oss2.Bucket(
                self._auth_v4(),
                self.endpoint,
                name,
                connect_timeout=self.connect_timeout,
                enable_crc=False,
                region=self.region,
            )
        return self._buckets[name]

    @contextlib.contextmanager
    def open(self, location: OssLocation) -> Iterator[IO[bytes]]:
        """The object as a stream; closed on exit."""
        import oss2

        try:
            stream = self.bucket(location.bucket).get_object(location.key)
        except oss2.exceptions.OssError as error:
            raise SourceError(_explain(location, error), getattr(error, "code", "") or "") from None
        except oss2.exceptions.RequestError as error:
            raise SourceError(
                f"{location.url}: OSS at {self.endpoint} cannot be reached ({error}); check "
                f"{env.CHATAPP_OSS_ENDPOINT} and the network"
            ) from None
        try:
            yield stream
        finally:
            stream.close()

    def head(self, location: OssLocation) -> dict[str, Any]:
        """ETag, size and user metadata (``x-oss-meta-*``, names lower-case without the prefix)."""
        import oss2

        try:
            result = self.bucket(location.bucket).head_object(location.key)
        except oss2.exceptions.OssError as error:
            raise SourceError(_explain(location, error), getattr(error, "code", "") or "") from None
        meta = {
            k[len("x-oss-meta-") :].lower(): v
            for k, v in result.headers.items()
            if k.lower().startswith("x-oss-meta-")
        }
        return {"etag": (result.etag or "").strip('"'), "size": result.content_length, "meta": meta}

    def presign_get(self, location: OssLocation, seconds: int, *, filename: str = "") -> str:
        """A V4-presigned GET URL of the object, valid ``seconds`` (1..604800): anyone holding it may read the
        object until then, without credentials (with STS credentials it carries ``x-oss-security-token``).
        ``filename``: the download's name (``response-content-disposition``, signed with the rest).
        Signing is local: nothing is sent to OSS."""
        if not 1 <= seconds <= 7 * 24 * 3600:
            raise OptionsError(f"presign_get: seconds={seconds}: OSS accepts 1 to 604800 (7 days)")
        params = {"response-content-disposition": f'attachment; filename="{filename}"'} if filename else None
        url = self.bucket(location.bucket).sign_url(
            "GET", location.key, seconds, params=params, slash_safe=True
        )
        return str(url)

    def put(
        self,
        location: OssLocation,
        data: bytes | IO[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "text/csv",
    ) -> str:
        """Upload (reports and error reports); returns the ETag."""
        import oss2

        headers = {"Content-Type": content_type}
        headers.update({f"x-oss-meta-{k}": v for k, v in (metadata or {}).items()})
        try:
            result = self.bucket(location.bucket).put_object(location.key, data, headers=headers)
        except oss2.exceptions.OssError as error:
            raise SourceError(_explain(location, error), getattr(error, "code", "") or "") from None
        return str(result.etag or "").strip('"')


def _explain(location: OssLocation, error: Any) -> str:
    code = getattr(error, "code", "") or type(error).__name__
    status = getattr(error, "status", "")
    fixes = {
        "NoSuchKey": "check the key (keys are case-sensitive) or upload the file first",
        "NoSuchBucket": "check the bucket name and the region of the endpoint",
        "AccessDenied": "the credentials lack oss:GetObject/PutObject on this bucket; grant it to the role",
        "InvalidAccessKeyId": "the access key is unknown: check the credentials",
        "SignatureDoesNotMatch": "the secret does not match the access key: check the credentials",
    }
    # OSS's EC diagnosis codes (help.aliyun.com/en/oss/user-guide/<EC>) say more than the code for these two
    by_ec = {
        "0002-00000080": "OSS refuses V1 signatures here; the client must sign with V4 (OSS4-HMAC-SHA256)",
        "0002-00000228": f"the request was signed for another region than the bucket's: set "
        f"{env.CHATAPP_OSS_REGION} to the bucket's region id",
    }
    fix = by_ec.get(getattr(error, "ec", "") or "") or fixes.get(code, "see the OSS error code")
    return f"{location.url}: OSS answered {status} {code}: {getattr(error, 'message', '') or error}; {fix}"
