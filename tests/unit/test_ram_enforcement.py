"""Each emulator refuses a role's request its RAM policy does not allow, with the service's real access-denied
error, through the real SDK; the account's own keys stay unrestricted (alibaba_localcloud.ram, LocalCloud)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oss2
import pytest
import tablestore

from alibaba_localcloud._accounts import CamsCredentials
from alibaba_localcloud.cloud import LocalCloud
from alibaba_localcloud.fc import LocalFc
from alibaba_localcloud.ram import Policy
from alibaba_localcloud.syaml import FunctionSpec

BUCKET, INSTANCE = "ram-bucket", "ram-inst"


def doc(*statements: tuple[Any, Any, str]) -> dict[str, Any]:
    return {
        "Version": "1",
        "Statement": [{"Effect": effect, "Action": a, "Resource": r} for a, r, effect in statements],
    }


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(bucket=BUCKET, instance=INSTANCE, realistic=False) as local:
        local.oss.oss2_bucket(BUCKET).put_object("incoming/a.csv", b"to\n1\n")
        local.oss.oss2_bucket(BUCKET).put_object("private/b.csv", b"to\n2\n")
        owner = ots_client(local, local.credentials)
        for table in ("chatapp_jobs", "other"):
            owner.create_table(
                tablestore.TableMeta(table, [("id", "STRING")]),
                tablestore.TableOptions(),
                tablestore.ReservedThroughput(tablestore.CapacityUnit(0, 0)),
            )
        yield local


def bucket_as(cloud: LocalCloud, keys: CamsCredentials) -> Any:
    provider = oss2.credentials.StaticCredentialsProvider(
        keys.access_key_id, keys.access_key_secret, keys.security_token or ""
    )
    return oss2.Bucket(oss2.ProviderAuthV4(provider), cloud.oss.endpoint, BUCKET, region=keys.region_id)


def ots_client(cloud: LocalCloud, keys: CamsCredentials) -> Any:
    return tablestore.OTSClient(
        cloud.tablestore.endpoint,
        keys.access_key_id,
        keys.access_key_secret,
        INSTANCE,
        sts_token=keys.security_token,
        region=keys.region_id,
        retry_policy=tablestore.NoRetryPolicy(),
    )


# --- OSS: 403 AccessDenied (OSS error 0003-00000201 and its AccessDeniedDetail) ------------------------
def test_oss_allows_what_the_policy_allows_and_refuses_the_rest(cloud: LocalCloud) -> None:
    keys = cloud.add_role(
        "oss-reader",
        doc(
            ("oss:GetObject", "acs:oss:*:${accountId}:${bucket}/incoming/*", "Allow"),
            ("oss:PutObject", "acs:oss:*:${accountId}:${bucket}/reports/*", "Allow"),
        ),
    )
    bucket = bucket_as(cloud, keys)
    assert bucket.get_object("incoming/a.csv").read() == b"to\n1\n"
    assert bucket.head_object("incoming/a.csv").status == 200  # HeadObject is authorized as oss:GetObject
    bucket.put_object("reports/r.csv", b"x")
    with pytest.raises(oss2.exceptions.AccessDenied) as refused:
        bucket.get_object("private/b.csv")
    assert refused.value.status == 403 and refused.value.code == "AccessDenied"
    assert "<NoPermissionType>ImplicitDeny</NoPermissionType>" in refused.value.body.decode()
    assert "<AuthAction>oss:GetObject</AuthAction>" in refused.value.body.decode()
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.put_object("incoming/x.csv", b"x")  # reads there, never writes
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.head_object("private/b.csv")  # the HEAD's error travels in x-oss-err
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.list_objects_v2(prefix="incoming/")  # oss:ListObjects on the bucket: not granted
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.copy_object(BUCKET, "private/b.csv", "reports/copy.csv")  # GetObject on the source too
    bucket.copy_object(BUCKET, "incoming/a.csv", "reports/copy.csv")
    assert (
        cloud.oss.oss2_bucket(BUCKET).get_object("private/b.csv").read() == b"to\n2\n"
    )  # the owner: anything


def test_oss_explicit_deny_wins_and_says_so(cloud: LocalCloud) -> None:
    keys = cloud.add_role(
        "oss-denied",
        doc(
            ("oss:*", "acs:oss:*:*:${bucket}/*", "Allow"),
            ("oss:GetObject", "acs:oss:*:*:${bucket}/private/*", "Deny"),
        ),
    )
    with pytest.raises(oss2.exceptions.AccessDenied) as refused:
        bucket_as(cloud, keys).get_object("private/b.csv")
    assert refused.value.ec == "0003-00000201"
    assert "<NoPermissionType>ExplicitDeny</NoPermissionType>" in refused.value.body.decode()


# --- Tablestore: 403 OTSNoPermissionAccess ------------------------------------------------------------------
def test_tablestore_refuses_an_api_or_table_the_policy_does_not_name(cloud: LocalCloud) -> None:
    table = "acs:ots:${region}:${accountId}:instance/${instance}/table/chatapp_*"
    keys = cloud.add_role("ots-reader", doc(("ots:GetRow", table, "Allow")))
    client = ots_client(cloud, keys)
    assert client.get_row("chatapp_jobs", [("id", "x")], max_version=1)[1] is None
    row = tablestore.Row([("id", "x")], [("v", "1")])
    for call in (
        lambda: client.put_row("chatapp_jobs", row),  # the API
        lambda: client.get_row("other", [("id", "x")], max_version=1),  # the table
        lambda: client.list_table(),  # on the instance
    ):
        with pytest.raises(tablestore.OTSServiceError) as refused:
            call()
        assert (refused.value.get_http_status(), refused.value.get_error_code()) == (
            403,
            "OTSNoPermissionAccess",
        )
    lister = ots_client(
        cloud,
        cloud.add_role("ots-lister", doc(("ots:ListTable", "acs:ots:*:*:instance/${instance}", "Allow"))),
    )
    assert set(lister.list_table()) >= {"chatapp_jobs", "other"}


def test_tablestore_batch_write_needs_every_table(cloud: LocalCloud) -> None:
    table = "acs:ots:*:*:instance/${instance}/table/chatapp_jobs"
    client = ots_client(cloud, cloud.add_role("ots-writer", doc(("ots:BatchWriteRow", table, "Allow"))))
    request = tablestore.BatchWriteRowRequest()
    for name in ("chatapp_jobs", "other"):
        put = tablestore.PutRowItem(
            tablestore.Row([("id", "b")], [("v", "1")]), tablestore.Condition("IGNORE")
        )
        request.add(tablestore.TableInBatchWriteRowItem(name, [put]))
    with pytest.raises(tablestore.OTSServiceError) as refused:
        client.batch_write_row(request)
    assert refused.value.get_error_code() == "OTSNoPermissionAccess"


# --- CAMS: 403 Forbidden.RAM with AccessDeniedDetail ------------------------------------------------------
def cams_client(cloud: LocalCloud, keys: CamsCredentials) -> Any:
    from alibabacloud_cams20200606.client import Client
    from alibabacloud_tea_openapi.models import Config

    return Client(
        Config(
            access_key_id=keys.access_key_id,
            access_key_secret=keys.access_key_secret,
            security_token=keys.security_token,
            endpoint=cloud.cams.host_port,
            protocol="HTTP",
            region_id=keys.region_id,
        )
    )


def test_cams_refuses_an_action_the_policy_does_not_allow(cloud: LocalCloud) -> None:
    from alibabacloud_cams20200606 import models

    client = cams_client(cloud, cloud.add_role("cams-lister", doc(("cams:ListChatappMessage", "*", "Allow"))))
    request = models.SendChatappMassMessageRequest(
        channel_type="whatsapp",
        template_code="T_WELCOME",
        language="en",
        from_="6580000000",
        sender_list=[models.SendChatappMassMessageRequestSenderList(to="6591234567")],
    )
    with pytest.raises(Exception) as refused:
        client.send_chatapp_mass_message(request)
    assert getattr(refused.value, "code", "") == "Forbidden.RAM"
    assert getattr(refused.value, "status_code", None) == 403 or "403" in str(refused.value)
    detail = (getattr(refused.value, "data", None) or {}).get("AccessDeniedDetail")
    assert (
        detail["AuthAction"] == "cams:SendChatappMassMessage" and detail["NoPermissionType"] == "ImplicitDeny"
    )
    assert cloud.cams.backend.received == [], "nothing was sent"
    try:  # the allowed action passes RAM (whatever CAMS's own checks then say of these parameters)
        client.list_chatapp_message(models.ListChatappMessageRequest(channel_type="whatsapp"))
    except Exception as error:
        assert getattr(error, "code", "") != "Forbidden.RAM"


# --- FC: 403 AccessDenied -------------------------------------------------------------------------------
def test_fc_refuses_an_invoke_of_a_function_the_policy_does_not_name(tmp_path: Path) -> None:
    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_tea_openapi.models import Config

    code = tmp_path / "f"
    code.mkdir()
    (code / "index.py").write_text("def handler(event, context):\n    return 'ok'\n")
    specs = [
        FunctionSpec(resource=n, name=n, runtime="python3.10", handler="index.handler", code=code, timeout=5)
        for n in ("allowed", "other")
    ]
    with LocalFc(s_yaml=None, functions=specs, source_layout=False) as fc:
        policy = Policy.parse(
            doc(("fc:InvokeFunction", f"acs:fc:{fc.region_id}:{fc.account_id}:functions/allowed", "Allow"))
        )
        fc.backend.add_account("STS.role", "secret", "token", policy=policy, role="invoker")
        from alibabacloud_fc20230330.client import Client

        client = Client(
            Config(
                access_key_id="STS.role",
                access_key_secret="secret",
                security_token="token",
                endpoint=fc.host_port,
                protocol="HTTP",
                region_id=fc.region_id,
            )
        )
        assert (
            client.invoke_function("allowed", fc_models.InvokeFunctionRequest(body=b"{}")).body.read()
            == b"ok"
        )
        with pytest.raises(Exception) as refused:
            client.invoke_function("other", fc_models.InvokeFunctionRequest(body=b"{}"))
        assert getattr(refused.value, "code", "") == "AccessDenied"
        assert "fc:InvokeFunction" in str(getattr(refused.value, "message", ""))
        assert (
            fc.fc_client().invoke_function("other", fc_models.InvokeFunctionRequest(body=b"{}")).body.read()
            == b"ok"
        )


# --- where the local cloud's policies come from ------------------------------------------------------------
def test_the_product_cloud_reads_each_functions_policy_from_deploy(tmp_path: Path) -> None:
    import shutil

    from chatapp_mass.core.errors import OptionsError
    from chatapp_mass.entry.localcloud import deploy_policies

    root = Path(__file__).resolve().parents[2]
    policies = deploy_policies(root / "s.yaml")
    assert policies is not None and set(policies) == {
        "chatapp-mass-ingest",
        "chatapp-mass-sender",
        "chatapp-mass-api",
    }
    assert policies["chatapp-mass-sender"] == json.loads(
        (root / "deploy" / "ram-policy-sender.json").read_text()
    )
    shutil.copy(root / "s.yaml", tmp_path / "s.yaml")
    assert deploy_policies(tmp_path / "s.yaml") is None  # no deploy/ beside it: no RAM
    (tmp_path / "deploy").mkdir()
    with pytest.raises(OptionsError, match="ram-policy-ingest.json"):
        deploy_policies(tmp_path / "s.yaml")


def test_a_role_without_a_policy_is_refused_when_policies_are_given(tmp_path: Path) -> None:
    code = tmp_path / "f"
    code.mkdir()
    (code / "index.py").write_text("def handler(event, context):\n    return 'ok'\n")
    spec = FunctionSpec(
        resource="f",
        name="f",
        runtime="python3.10",
        handler="index.handler",
        code=code,
        role="acs:ram::1:role/Worker",
    )
    with pytest.raises(ValueError, match="role 'acs:ram::1:role/Worker' has no policy"):
        LocalFc(
            s_yaml=None,
            functions=[spec],
            source_layout=False,
            role_policies={"other": Policy.parse(doc(("a:b", "*", "Allow")))},
        )
    fc = LocalFc(
        s_yaml=None,
        functions=[spec],
        source_layout=False,
        role_policies={"WORKER": Policy.parse(doc(("a:b", "*", "Allow")))},
    )  # role names are case-insensitive
    account = fc.role_accounts["worker"]
    assert account.access_key_id.startswith("STS.") and account.policy is not None
    assert fc.backend.function_environment(spec, code)["ALIBABA_CLOUD_ACCESS_KEY_ID"] == account.access_key_id
