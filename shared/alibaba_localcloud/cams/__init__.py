"""Local CAMS (ChatApp Message Service): ``SendChatappMassMessage`` over real HTTP for the real SDK."""

from .._accounts import Account, CamsCredentials, generate_credentials
from .exceptions import CamsError
from .models import Attempt, CamsBackend, ReceivedMessage, Reply, validate_send
from .server import LocalCams

__all__ = [
    "Account",
    "Attempt",
    "CamsBackend",
    "CamsCredentials",
    "CamsError",
    "LocalCams",
    "ReceivedMessage",
    "Reply",
    "generate_credentials",
    "validate_send",
]
