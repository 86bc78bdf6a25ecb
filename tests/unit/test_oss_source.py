"""The product's OSS client (``chatapp_mass.adapters.oss``): V4 signatures for the bucket's region, and
where the region comes from. Driven against the local OSS, which refuses V1 as a new bucket does: a V1-signing
client fails here."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

from alibaba_localcloud.oss import LocalOss  # noqa: E402
from chatapp_mass.adapters.oss import (  # noqa: E402
    OssClient,
    OssLocation,
    SourceError,
    oss_region,
    region_of_endpoint,
)
from chatapp_mass.core.errors import OptionsError  # noqa: E402


@pytest.fixture(scope="module")
def local_oss() -> Iterator[LocalOss]:
    with LocalOss(region_id="cn-hangzhou") as oss:
        yield oss


def client_for(oss: LocalOss, region: str) -> OssClient:
    c = oss.credentials
    return OssClient(
        oss.endpoint,
        region=region,
        access_key_id=c.access_key_id,
        access_key_secret=c.access_key_secret,
        security_token=c.security_token or "",
    )


@pytest.mark.parametrize(
    "endpoint, region",
    [
        ("https://oss-cn-hangzhou.aliyuncs.com", "cn-hangzhou"),
        ("https://oss-ap-southeast-1-internal.aliyuncs.com", "ap-southeast-1"),
        ("oss-eu-central-1.aliyuncs.com", "eu-central-1"),
        ("https://my-bucket.oss-us-west-1.aliyuncs.com/", "us-west-1"),
        ("https://oss-accelerate.aliyuncs.com", ""),
        ("https://oss-accelerate-overseas.aliyuncs.com", ""),
        ("http://127.0.0.1:9000", ""),
        ("https://files.example.com", ""),
    ],
)
def test_region_of_endpoint(endpoint: str, region: str) -> None:
    assert region_of_endpoint(endpoint) == region


def test_region_order_and_the_error_naming_the_setting() -> None:
    hangzhou = "https://oss-cn-hangzhou-internal.aliyuncs.com"
    assert oss_region({"CHATAPP_OSS_REGION": "cn-beijing", "CHATAPP_OSS_ENDPOINT": hangzhou}) == "cn-beijing"
    assert oss_region({"CHATAPP_OSS_ENDPOINT": hangzhou, "FC_REGION": "ap-southeast-1"}) == "cn-hangzhou"
    loopback = {"CHATAPP_OSS_ENDPOINT": "http://127.0.0.1:9000"}
    assert (
        oss_region({**loopback, "FC_REGION": "ap-southeast-5", "ALIBABA_CLOUD_REGION_ID": "ap-southeast-1"})
        == "ap-southeast-5"
    )
    assert oss_region({**loopback, "ALIBABA_CLOUD_REGION_ID": "ap-southeast-1"}) == "ap-southeast-1"
    assert oss_region({"ALIBABA_CLOUD_REGION_ID": "cn-shanghai"}) == "cn-shanghai"  # endpoint oss-cn-shanghai
    assert oss_region({}) == "ap-southeast-1"  # no endpoint: the default region's public endpoint
    with pytest.raises(OptionsError) as error:
        oss_region(loopback)
    assert "CHATAPP_OSS_REGION" in str(error.value) and "127.0.0.1:9000" in str(error.value)
    with pytest.raises(OptionsError):
        OssClient.from_env(loopback)
    client = OssClient.from_env({"CHATAPP_OSS_ENDPOINT": hangzhou}, access_key_id="k", access_key_secret="s")
    assert (client.endpoint, client.region) == (hangzhou, "cn-hangzhou")


def test_the_product_signs_v4_for_the_buckets_region(local_oss: LocalOss) -> None:
    client = client_for(local_oss, "cn-hangzhou")
    location = OssLocation("chatapp-mass", "reports/r.csv")
    etag = client.put(location, b"line,to\n2,8613800000000\n", metadata={"job": "j1"})
    assert client.head(location) == {"etag": etag, "size": 24, "meta": {"job": "j1"}}
    with client.open(location) as stream:
        assert stream.read() == b"line,to\n2,8613800000000\n"
    assert local_oss.backend.requests[-1].code == "OK"  # V1 would have been 403 AccessDenied


def test_a_wrong_region_is_explained(local_oss: LocalOss) -> None:
    with (
        pytest.raises(SourceError) as error,
        client_for(local_oss, "ap-southeast-1").open(OssLocation("chatapp-mass", "any.csv")),
    ):
        pass
    assert error.value.code == "SignatureDoesNotMatch" and error.value.permanent
    assert "CHATAPP_OSS_REGION" in str(error.value)


def test_a_v1_refusal_is_explained_as_such(local_oss: LocalOss) -> None:
    """Not "grant oss:GetObject": the EC of a V1 refusal (0002-00000080) says what is really wrong."""
    import oss2

    from chatapp_mass.adapters.oss import _explain

    c = local_oss.credentials
    v1 = oss2.Bucket(
        oss2.StsAuth(c.access_key_id, c.access_key_secret, c.security_token),
        local_oss.endpoint,
        "chatapp-mass",
    )
    with pytest.raises(oss2.exceptions.AccessDenied) as refused:
        v1.get_object("any.csv")
    text = _explain(OssLocation("chatapp-mass", "any.csv"), refused.value)
    assert "V4" in text and "oss:GetObject" not in text
