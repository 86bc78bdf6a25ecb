"""FC entry point: the HTTP API (submit, watch, fetch, cancel jobs) and, on its timer, the scheduler and sweeper."""

from chatapp_mass.entry.handlers import api


def handler(event, context):  # noqa: ANN001, ANN201 - FC's signature
    return api(event, context)
