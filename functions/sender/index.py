"""FC entry point: a batch (or job) reference -> claim, rate-limit, SendChatappMassMessage, record, finalize."""

from chatapp_mass.entry.handlers import sender


def handler(event, context):  # noqa: ANN001, ANN201 - FC's signature
    return sender(event, context)
