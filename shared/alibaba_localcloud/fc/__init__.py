"""Local Function Compute 3.0: s.yaml's functions run in worker subprocesses behind ``InvokeFunction`` for the
real ``alibabacloud_fc20230330`` SDK, with FC's async retries, destinations, OSS and timer triggers, and
crash / duplicate / system-error injection."""

from .exceptions import FcError
from .instances import ColdStart, Outcome
from .models import DestinationRecord, FcBackend, InvocationRecord, RunningInvocation, oss_trigger_matches
from .server import LocalFc

__all__ = [
    "ColdStart",
    "DestinationRecord",
    "FcBackend",
    "FcError",
    "InvocationRecord",
    "LocalFc",
    "Outcome",
    "RunningInvocation",
    "oss_trigger_matches",
]
