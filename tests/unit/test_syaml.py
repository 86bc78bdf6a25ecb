"""The s.yaml reader: expressions resolved as ``s preview`` renders them, fc3 functions extracted."""

from __future__ import annotations

from pathlib import Path

import pytest

from alibaba_localcloud import syaml
from alibaba_localcloud.syaml import SYamlError

S_YAML = """
edition: 3.0.0
name: app
access: default
vars:
  region: ${env('REGION', 'ap-southeast-1')}
  bucket: "${env(\\"BUCKET\\")}"
  memory: 1024
  tags: {team: sender}
  arn: acs:oss:${vars.region}:${config('AccountID')}:${vars.bucket}
resources:
  sender:
    component: fc3
    props:
      region: ${vars.region}
      functionName: chatapp-sender
      runtime: python3.10
      handler: index.handler
      code: ./functions/sender
      memorySize: ${vars.memory}
      environmentVariables:
        REGION: ${this.props.region}
        MEMORY: ${vars.memory}
        INGEST: ${resources.ingest.props.functionName}
  ingest:
    component: fc3
    props:
      region: ${vars.region}
      functionName: chatapp-ingest
      runtime: python3.12
      handler: index.handler
      code: ./functions/ingest
      timeout: 60
      role: acs:ram::${config('AccountID')}:role/chatapp
      asyncInvokeConfig:
        maxAsyncRetryAttempts: 1
        destinationConfig:
          onFailure: {destination: "acs:fc:${vars.region}::functions/${resources.sender.props.functionName}"}
      triggers:
        - triggerName: upload
          triggerType: oss
          sourceArn: ${vars.arn}
          invocationRole: acs:ram::${config('AccountID')}:role/aliyunosseventnotificationrole
          triggerConfig:
            events: [oss:ObjectCreated:*]
            filter: {key: {prefix: incoming/, suffix: .csv}}
  bucket:
    component: oss
    props: {bucket: "${vars.bucket}"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_expressions_resolve_with_types_kept_when_whole(tmp_path: Path) -> None:
    doc = syaml.load(write(tmp_path, S_YAML), environ={"BUCKET": "b1"}, account_id="111")
    props = doc["resources"]["sender"]["props"]
    assert props["memorySize"] == 1024  # whole-string expression keeps its type
    assert props["environmentVariables"] == {
        "REGION": "ap-southeast-1",
        "MEMORY": 1024,
        "INGEST": "chatapp-ingest",
    }
    assert doc["vars"]["arn"] == "acs:oss:ap-southeast-1:111:b1"  # embedded ones interpolate
    assert doc["resources"]["bucket"]["props"]["bucket"] == "b1"


def test_environment_default_and_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BUCKET='from-dotenv'\nREGION=cn-hangzhou\n", encoding="utf-8")
    doc = syaml.load(write(tmp_path, S_YAML), environ={"REGION": "eu-central-1"}, account_id="1")
    assert doc["vars"]["region"] == "eu-central-1"  # the environment wins over .env
    assert doc["vars"]["bucket"] == "from-dotenv"


def test_account_id_from_environment(tmp_path: Path) -> None:
    doc = syaml.load(write(tmp_path, S_YAML), environ={"BUCKET": "b", "ALIBABA_CLOUD_ACCOUNT_ID": "42"})
    assert doc["resources"]["ingest"]["props"]["role"] == "acs:ram::42:role/chatapp"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("x: ${vars.nope}", r"\$\{vars.nope\} not found \(at vars.x\)"),
        ("x: a-${env('MISSING')}", r"\$\{env\('MISSING'\)\} not found.*MISSING \(at vars.x\)"),
        ("x: ${config('AccountID')}", r"AccountID.*not found"),
        ("x: ${vars.y}\n  y: ${vars.x}", r"refers to itself"),
        ("x: ${what.ever}", r"\$\{what.ever\} not found"),
    ],
)
def test_unresolved_expressions_name_the_expression_and_key(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    with pytest.raises(SYamlError, match=expected):
        syaml.load(write(tmp_path, f"vars:\n  {snippet}\nresources: {{}}\n"), environ={})


def test_functions_extracts_fc3_resources_with_defaults(tmp_path: Path) -> None:
    doc = syaml.load(write(tmp_path, S_YAML), environ={"BUCKET": "b1"}, account_id="111")
    sender, ingest = syaml.functions(doc, tmp_path)
    assert sender.resource == "sender" and sender.name == "chatapp-sender"
    assert sender.code == (tmp_path / "functions" / "sender").resolve()
    assert (sender.memory_size, sender.timeout) == (1024, 3)
    assert sender.environment["MEMORY"] == "1024"  # environment values are strings
    assert sender.async_config == syaml.AsyncConfig(3, 86400, None, None)
    assert (ingest.memory_size, ingest.timeout, ingest.runtime) == (512, 60, "python3.12")
    assert ingest.async_config.max_async_retry_attempts == 1
    assert ingest.async_config.on_failure == "acs:fc:ap-southeast-1::functions/chatapp-sender"
    (trigger,) = ingest.triggers
    assert (trigger.name, trigger.type, trigger.source_arn) == (
        "upload",
        "oss",
        "acs:oss:ap-southeast-1:111:b1",
    )
    assert trigger.config["filter"]["key"] == {"prefix": "incoming/", "suffix": ".csv"}
    assert trigger.invocation_role == "acs:ram::111:role/aliyunosseventnotificationrole"
