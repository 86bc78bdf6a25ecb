"""Local CAMS (ChatApp Message Service): ``SendChatappMassMessage`` over real HTTP for the real SDK."""

from .exceptions import CamsError
from .models import Account, Attempt, CamsBackend, ReceivedMessage, Reply, validate_send
from .server import CamsCredentials, LocalCams, generate_credentials

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
