"""FC entry point: OSS upload of a recipient CSV -> plan the job -> fan out to the sender
(see chatapp_mass.services.jobs)."""

from chatapp_mass.entry.handlers import ingest


def handler(event, context):  # noqa: ANN001, ANN201 - FC's signature
    return ingest(event, context)
