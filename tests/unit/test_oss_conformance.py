"""OSS conformance: the REAL ``oss2`` SDK, signing V4 as the product does, against the local OSS over HTTP.

Each test states the documented behaviour it checks and where it is written; the emulator must behave as
the docs say, not as the product needs. The local OSS refuses V1 signatures (as a bucket created since
2025-09-01 does), so every call that succeeds here was signed with V4.

Sources:
- V1 -> V4: https://www.alibabacloud.com/help/en/oss/developer-reference/guidelines-for-upgrading-v1-signatures-to-v4-signatures
- PutObject (ETag, Content-MD5, x-oss-meta-*): https://www.alibabacloud.com/help/en/oss/developer-reference/putobject
- Ranges: https://help.aliyun.com/en/oss/how-to-obtain-oss-resources-by-segmenting-http-range-requests
  (200 with the whole object for an invalid or out-of-range Range; ``x-oss-range-behavior: standard``:
  an end past the object is clamped, a start past it is 416 InvalidRange)
- ListObjects / ListObjectsV2: https://www.alibabacloud.com/help/en/oss/developer-reference/listobjects ,
  https://www.alibabacloud.com/help/en/oss/developer-reference/listobjectsv2 (max-keys 1..1000, default
  100; CommonPrefixes; NextMarker / NextContinuationToken; KeyCount)
- DeleteObject (204, also for a missing object): https://www.alibabacloud.com/help/en/oss/developer-reference/deleteobject
- DeleteMultipleObjects (<= 1,000 keys, Content-MD5 required, quiet mode):
  https://www.alibabacloud.com/help/doc-detail/31983.htm
- Errors: 404 NoSuchKey / NoSuchBucket, 403 SignatureDoesNotMatch / AccessDenied, 400 InvalidDigest
  (help.aliyun.com "HTTP status code 403/404/400"); V4 wrong region: EC 0002-00000228.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

import oss2  # noqa: E402
from oss2 import exceptions as oe  # noqa: E402

from alibaba_localcloud.oss import LocalOss  # noqa: E402

BUCKET = "chatapp-mass"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def local_oss() -> Iterator[LocalOss]:
    with LocalOss(seed=11) as oss:
        yield oss


@pytest.fixture
def bucket(local_oss: LocalOss) -> Iterator[Any]:
    local_oss.backend.reset()
    yield v4_bucket(local_oss)


def v4_bucket(
    oss: LocalOss, *, name: str = BUCKET, secret: str | None = None, region: str | None = None, **options: Any
) -> Any:
    """What the product builds (``adapters.oss.OssClient``): ProviderAuthV4 + a region, STS token included."""
    c = oss.credentials
    provider = oss2.credentials.StaticCredentialsProvider(
        c.access_key_id, secret or c.access_key_secret, c.security_token or ""
    )
    return oss2.Bucket(
        oss2.ProviderAuthV4(provider), oss.endpoint, name, region=region or c.region_id, **options
    )


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


# --- signed get / put, ETag, metadata -------------------------------------------------------------------------
def test_v4_signed_put_get_head_and_etag(bucket: Any) -> None:
    data = b"to,name\n8613800000000,Ann\n"
    put = bucket.put_object("lists/a.csv", data, headers={"Content-Type": "text/csv"})
    # PutObject: the ETag of a simply uploaded object is the MD5 of its content (upper-case hex), quoted
    assert put.resp.headers["ETag"] == f'"{md5_hex(data)}"'
    got = bucket.get_object("lists/a.csv")
    assert got.read() == data and got.status == 200 and got.content_type == "text/csv"
    assert got.headers["ETag"] == f'"{md5_hex(data)}"' and got.content_length == len(data)
    head = bucket.head_object("lists/a.csv")
    assert head.etag == md5_hex(data) and head.content_length == len(data)
    listed = bucket.list_objects_v2(prefix="lists/").object_list
    assert [(o.key, o.etag, o.size) for o in listed] == [("lists/a.csv", md5_hex(data), len(data))]


def test_user_metadata_round_trips(bucket: Any) -> None:
    headers = {"x-oss-meta-Job-Id": "job-42", "x-oss-meta-rows": "1"}
    bucket.put_object("m.csv", b"x", headers=headers)
    for result in (bucket.head_object("m.csv"), bucket.get_object("m.csv")):
        # header names are case-insensitive (oss2 keeps them in a CaseInsensitiveDict); the values are kept
        assert result.headers["x-oss-meta-job-id"] == "job-42"
        assert result.headers["X-Oss-Meta-Rows"] == "1"
    meta = bucket.get_object_meta("m.csv")
    assert meta.etag == md5_hex(b"x") and meta.content_length == 1
    bucket.put_object("m.csv", b"y")  # an overwrite replaces the metadata with the new request's
    assert "x-oss-meta-job-id" not in bucket.head_object("m.csv").headers


# --- ranges ------------------------------------------------------------------------------------------------
def test_byte_ranges(bucket: Any) -> None:
    data = bytes(range(256)) * 4  # 1,024 bytes
    bucket.put_object("r.bin", data)
    first = bucket.get_object("r.bin", byte_range=(0, 9))
    assert (first.status, first.read()) == (206, data[:10])
    assert first.headers["Content-Range"] == "bytes 0-9/1024"
    open_ended = bucket.get_object("r.bin", byte_range=(1000, None))  # bytes=1000-
    assert (open_ended.status, open_ended.read()) == (206, data[1000:])
    assert open_ended.headers["Content-Range"] == "bytes 1000-1023/1024"
    suffix = bucket.get_object("r.bin", byte_range=(None, 24))  # bytes=-24: the last 24 bytes
    assert (suffix.status, suffix.read()) == (206, data[-24:])
    # documented default: an out-of-range Range is ignored -> 200 and the whole object
    for outside in ((0, 1024), (1024, 2000), (1024, None), (None, 2000)):
        whole = bucket.get_object("r.bin", byte_range=outside)
        assert (whole.status, whole.read()) == (200, data), outside
    standard = {"x-oss-range-behavior": "standard"}
    clamped = bucket.get_object("r.bin", byte_range=(1000, 5000), headers=standard)
    assert (clamped.status, clamped.read()) == (206, data[1000:])
    assert clamped.headers["Content-Range"] == "bytes 1000-1023/1024"
    with pytest.raises(oe.ServerError) as invalid:
        bucket.get_object("r.bin", byte_range=(1024, 2000), headers=standard)
    assert (invalid.value.status, invalid.value.code) == (416, "InvalidRange")


# --- listing -------------------------------------------------------------------------------------------------
KEYS = ["a/1.csv", "a/2.csv", "a/b/3.csv", "b/4.csv", "c.csv", "d.csv", "e.csv"]


def _fill(bucket: Any) -> None:
    for key in KEYS:
        bucket.put_object(key, key.encode())


def test_list_objects_prefix_delimiter_and_marker_paging(bucket: Any) -> None:
    _fill(bucket)
    top = bucket.list_objects(delimiter="/")
    assert [o.key for o in top.object_list] == ["c.csv", "d.csv", "e.csv"]
    assert top.prefix_list == ["a/", "b/"] and not top.is_truncated
    under_a = bucket.list_objects(prefix="a/", delimiter="/")
    assert [o.key for o in under_a.object_list] == ["a/1.csv", "a/2.csv"] and under_a.prefix_list == ["a/b/"]
    page = bucket.list_objects(max_keys=3)
    assert [o.key for o in page.object_list] == KEYS[:3] and page.is_truncated
    assert page.next_marker == "a/b/3.csv"
    rest = bucket.list_objects(marker=page.next_marker, max_keys=100)
    assert [o.key for o in rest.object_list] == KEYS[3:] and not rest.is_truncated
    # a common prefix counts as one entry towards max-keys
    mixed = bucket.list_objects(delimiter="/", max_keys=2)
    assert (mixed.prefix_list, [o.key for o in mixed.object_list], mixed.is_truncated) == (
        ["a/", "b/"],
        [],
        True,
    )
    assert [o.key for o in oss2.ObjectIterator(bucket, max_keys=2)] == KEYS
    with pytest.raises(oe.ServerError) as too_many:
        bucket.list_objects(max_keys=1001)
    assert (too_many.value.status, too_many.value.code) == (400, "InvalidArgument")


def test_list_objects_v2_continuation_and_key_count(bucket: Any) -> None:
    _fill(bucket)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = bucket.list_objects_v2(max_keys=2, continuation_token=token)
        pages += 1
        seen += [o.key for o in page.object_list]
        assert len(page.object_list) <= 2
        if not page.is_truncated:
            break
        assert page.next_continuation_token
        token = page.next_continuation_token
    assert seen == KEYS and pages == 4
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="a/", max_keys=1)] == KEYS[:3]
    grouped = bucket.list_objects_v2(prefix="a/", delimiter="/")
    assert grouped.prefix_list == ["a/b/"] and [o.key for o in grouped.object_list] == ["a/1.csv", "a/2.csv"]
    after = bucket.list_objects_v2(start_after="c.csv")
    assert [o.key for o in after.object_list] == ["d.csv", "e.csv"]
    empty = bucket.list_objects_v2(prefix="zzz/")
    assert (empty.object_list, empty.prefix_list, empty.is_truncated) == ([], [], False)


# --- delete --------------------------------------------------------------------------------------------------
def test_delete_and_batch_delete(local_oss: LocalOss, bucket: Any) -> None:
    _fill(bucket)
    assert bucket.delete_object("c.csv").status == 204
    assert bucket.delete_object("c.csv").status == 204  # documented: 204 for a missing object too
    assert not bucket.object_exists("c.csv")
    result = bucket.batch_delete_objects(["a/1.csv", "a/b/3.csv", "never-there.csv"])
    assert result.deleted_keys == ["a/1.csv", "a/b/3.csv", "never-there.csv"]
    assert local_oss.backend.keys(BUCKET) == ["a/2.csv", "b/4.csv", "d.csv", "e.csv"]
    odd = "lists/März 2024/ü & <x>.csv"
    bucket.put_object(odd, b"1")
    assert bucket.batch_delete_objects([odd]).deleted_keys == [odd]  # encoding-type=url round trip
    assert [r.operation for r in local_oss.backend.requests if r.operation.startswith("Delete")] == [
        "DeleteObject",
        "DeleteObject",
        "DeleteMultipleObjects",
        "DeleteMultipleObjects",
    ]


def test_batch_delete_requires_a_matching_content_md5(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object("k", b"1")
    body = b'<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet><Object><Key>k</Key></Object></Delete>'
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    # oss2's batch_delete_objects always computes a right Content-MD5 and never asks for quiet mode: send the
    # request through the Bucket's own signed request path (V4) with our body and header instead
    with pytest.raises(oe.InvalidDigest):
        bucket._Bucket__do_bucket("POST", data=body, params={"delete": ""}, headers={"Content-MD5": wrong})
    assert local_oss.backend.keys(BUCKET) == ["k"]
    right = base64.b64encode(hashlib.md5(body).digest()).decode()
    quiet = bucket._Bucket__do_bucket(
        "POST", data=body, params={"delete": ""}, headers={"Content-MD5": right}
    )
    assert b"<Deleted>" not in quiet.read()  # quiet mode lists only failures
    assert local_oss.backend.keys(BUCKET) == []


# --- errors --------------------------------------------------------------------------------------------------
def test_errors(local_oss: LocalOss, bucket: Any) -> None:
    with pytest.raises(oe.NoSuchKey) as no_key:
        bucket.get_object("missing.csv")
    assert no_key.value.status == 404 and no_key.value.details["Key"] == "missing.csv"
    with pytest.raises(oe.NotFound):  # HEAD has no body: the code travels in x-oss-err
        bucket.head_object("missing.csv")
    with pytest.raises(oe.NoSuchBucket) as no_bucket:
        v4_bucket(local_oss, name="no-such-bucket").get_object("x")
    assert no_bucket.value.status == 404
    with pytest.raises(oe.SignatureDoesNotMatch) as bad_signature:
        v4_bucket(local_oss, secret="not-the-secret").get_object("x")
    assert bad_signature.value.status == 403
    with pytest.raises(oe.SignatureDoesNotMatch) as wrong_region:
        v4_bucket(local_oss, region="cn-hangzhou").get_object("x")
    assert (wrong_region.value.status, wrong_region.value.ec) == (403, "0002-00000228")
    with pytest.raises(oe.AccessDenied) as anonymous:
        oss2.Bucket(oss2.AnonymousAuth(), local_oss.endpoint, BUCKET).get_object("x")
    assert anonymous.value.status == 403
    c = local_oss.credentials
    v1 = oss2.Bucket(
        oss2.StsAuth(c.access_key_id, c.access_key_secret, c.security_token), local_oss.endpoint, BUCKET
    )
    with pytest.raises(oe.AccessDenied) as v1_refused:  # a correct V1 signature, on a new bucket
        v1.get_object("x")
    assert (v1_refused.value.status, v1_refused.value.ec) == (403, "0002-00000080")


def test_content_md5_mismatch_is_invalid_digest(local_oss: LocalOss, bucket: Any) -> None:
    data = b"payload"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    assert bucket.put_object("ok", data, headers={"Content-MD5": good}).status == 200
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(oe.InvalidDigest) as mismatch:
        bucket.put_object("bad", data, headers={"Content-MD5": bad})
    assert mismatch.value.status == 400
    assert not bucket.object_exists("bad") and local_oss.backend.keys(BUCKET) == ["ok"]


# --- a big object, streamed --------------------------------------------------------------------------------
def test_20_mib_streamed_in_and_read_back_in_chunks(bucket: Any) -> None:
    """Chunked upload from a generator (the SDK cannot know the length), chunked reads back; tracemalloc
    (this process holds the client and the server) shows nobody held the object in memory."""
    size, block = 20 * MIB, 1 * MIB
    sent = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        for i in range(size // block):
            chunk = bytes([i % 251]) * block
            sent.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        put = bucket.put_object("big/20mib.bin", chunks())
        received = hashlib.sha256()
        length = 0
        with bucket.get_object("big/20mib.bin") as stream:
            while chunk := stream.read(block):
                received.update(chunk)
                length += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == size and received.hexdigest() == sent.hexdigest()
    assert peak < 8 * MIB, f"peak {peak:,} bytes for a {size:,}-byte object: something held it in memory"
    assert bucket.head_object("big/20mib.bin").content_length == size
    assert put.etag == bucket.head_object("big/20mib.bin").etag
    tail = bucket.get_object("big/20mib.bin", byte_range=(size - 10, None))
    assert (tail.status, tail.read()) == (206, bytes([(size // block - 1) % 251]) * 10)
