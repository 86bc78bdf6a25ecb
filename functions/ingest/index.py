"""FC entry point: OSS upload of a recipient CSV -> plan the job -> fan out to the sender
(see chatapp_mass.oss_jobs)."""

from chatapp_mass.handlers import ingest


def handler(event, context):  # noqa: ANN001, ANN201 - FC's signature
    return ingest(event, context)
