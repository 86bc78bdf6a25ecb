"""The ``send`` command: its arguments, and its flow (read, plan, send, report) with progress — shared by
``chatapp-mass send`` (:mod:`.cli`) and ``chatapp-mass demo`` (:mod:`.demo`).

Longer than 500 lines: the send command's many flags (each with the help a user reads) beside the one flow
they drive; split, a flag and the code reading it would sit in two files."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any

from chatapp_mass.adapters.oss import OssClient, OssLocation
from chatapp_mass.core.canary import canary_from_flags
from chatapp_mass.core.errors import AccessError, OptionsError
from chatapp_mass.core.options import (
    ChannelType,
    IntakeOptions,
    JobOptions,
    parse_intake_options,
    parse_job_options,
)
from chatapp_mass.core.outcomes import CREDENTIALS_FIX
from chatapp_mass.core.planning import API_MAX_RECIPIENTS, BODY_BUDGET, QUERY_BUDGET, request_budget
from chatapp_mass.entry.bootstrap import Services
from chatapp_mass.entry.progress import ProgressBar, ProgressLines
from chatapp_mass.runtime import env
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner, RunResult
from chatapp_mass.services.jobs import messaging_limits_from
from chatapp_mass.services.plan import PlanSettings, plan_job
from chatapp_mass.services.reconcile import Reconciler, ResendResult, resend_uncertain
from chatapp_mass.services.report import report_rows, write_report
from chatapp_mass.store.interface import OPEN_STATUSES, BatchStatus, JobRecord, JobStatus, Store

if TYPE_CHECKING:
    from chatapp_mass.adapters.cams import AccessCheck

EXIT_OK, EXIT_NOT_ALL_SENT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# CLI flag -> API parameter; also used to name the flag in error messages.
JOB_FLAGS = {
    "channel_type": ("--channel-type", "ChannelType", "whatsapp | viber | messenger | instagram"),
    "template_code": ("--template-code", "TemplateCode", "approved template code (Viber needs it)"),
    "template_name": ("--template-name", "TemplateName", "template name (TemplateCode or TemplateName)"),
    "language": ("--language", "Language", "template language code, e.g. en"),
    "from_": ("--from", "From", "sender: WhatsApp/Viber business number, page or account id"),
    "task_id": ("--task-id", "TaskId", "your own task id"),
    "cust_space_id": ("--cust-space-id", "CustSpaceId", "the customer's space (instance) id"),
    "fall_back_id": ("--fall-back-id", "FallBackId", "fallback policy id"),
    "fall_back_content": ("--fall-back-content", "FallBackContent", "custom fallback content"),
    "fall_back_duration": ("--fall-back-duration", "FallBackDuration", "seconds before fallback, 60-43200"),
    "fall_back_rule": ("--fall-back-rule", "FallBackRule", "undelivered | sentFailed"),
    "ttl": ("--ttl", "Ttl", "Viber only: seconds to deliver, 30-1209600"),
    "label": ("--label", "Label", "Viber only: promotion | transaction"),
    "tag": ("--tag", "Tag", "Viber only: your tag"),
    "messaging_limit": (
        "--messaging-limit",
        "MessagingLimit",
        "not sent to CAMS: recipients per rolling 24 h for --from (WhatsApp's messaging limit: 250, 1K, 2K, "
        f"10K, 100K or unlimited; the smaller of it and ${env.CHATAPP_MESSAGING_LIMITS}'s applies)",
    ),
}
_INT_FIELDS = {"fall_back_duration", "ttl"}
_FLAG_NAMES = {api: flag for _, (flag, api, _h) in JOB_FLAGS.items()}
_FLAG_NAMES.update(
    {
        "default_country": "--default-country",
        "delimiter": "--delimiter",
        "recipient_column": "--recipient-column",
        "sheet": "--sheet",
    }
)
_DELIMITERS = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "tab": "\t", "\\t": "\t", "\t": "\t"}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def store_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get(env.CHATAPP_STORE, env.DEFAULT_STORE),
        help="state store: sqlite:///relative.db, sqlite:////absolute.db or tablestore://INSTANCE (default: "
        "$CHATAPP_STORE or %(default)s). Runs that share a store share the rate budget.",
    )


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    job = parser.add_argument_group("job options (the API's parameters)")
    for name, (flag, _api, help_text) in JOB_FLAGS.items():
        job.add_argument(
            flag, dest=name, help=help_text, required=name in ("channel_type", "language", "from_")
        )
    intake = parser.add_argument_group("reading the file")
    intake.add_argument(
        "--default-country",
        metavar="CC",
        help="read numbers without + or 00 as this country's (ISO 3166 alpha-2, e.g. CN); "
        "without it, digits alone are read as international (8613800000000)",
    )
    intake.add_argument(
        "--allow-empty-params",
        action="store_true",
        help="accept rows with an empty template value (default: such rows are invalid)",
    )
    intake.add_argument(
        "--delimiter", help="force the delimiter: comma, semicolon or tab (default: sniffed from the header)"
    )
    intake.add_argument(
        "--recipient-column",
        metavar="NAME",
        help="the header of the column holding the numbers (default: the one named to, phone, phone number, "
        "mobile, whatsapp, msisdn, number, recipient...; case, spaces, underscores and dashes aside)",
    )
    intake.add_argument(
        "--sheet",
        metavar="NAME",
        help="an Excel workbook (.xlsx, recognised by content): the sheet to read (default: the first)",
    )
    send = parser.add_argument_group("sending")
    send.add_argument(
        "--qps",
        type=positive_int,
        default=10,
        help="attempts per sliding second, retries included, shared by all runs on the store "
        "(default %(default)s, the documented per-account limit)",
    )
    send.add_argument(
        "--batch-size",
        type=positive_int,
        default=API_MAX_RECIPIENTS,
        help=f"recipients per call, at most {API_MAX_RECIPIENTS} (default %(default)s)",
    )
    send.add_argument(
        "--max-request-bytes",
        type=positive_int,
        default=None,
        help="bound on the URL-encoded SenderList of one call: in the form body "
        f"(${env.CHATAPP_CAMS_PARAMS_IN}=body, the default) {BODY_BUDGET:,}; in the URL "
        f"(${env.CHATAPP_CAMS_PARAMS_IN}=query) {QUERY_BUDGET:,}, which keeps request lines under "
        "16 KiB",
    )
    send.add_argument(
        "--max-stall",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="stop as 'stalled' (resumable) after this long without progress while throttled or "
        "unreachable (default %(default)g)",
    )
    send.add_argument(
        "--concurrency",
        type=positive_int,
        default=0,
        help="calls in flight at most (default: 3 x qps, which holds the rate at ~3 s latency)",
    )
    send.add_argument(
        "--canary",
        type=positive_int,
        default=0,
        metavar="N",
        help="send the first N valid recipients first and wait for their delivery receipts; go on only if "
        "at most --canary-max-failure of them failed, else pause the job (default: no canary)",
    )
    send.add_argument(
        "--canary-max-failure",
        type=float,
        default=0.05,
        metavar="RATE",
        help="the canary's highest failure rate that lets the job go on, 0..1 (default %(default)g)",
    )
    send.add_argument(
        "--canary-timeout",
        type=positive_float,
        default=900.0,
        metavar="SECONDS",
        help="how long the canary waits for receipts before deciding on those it has (default %(default)g)",
    )
    send.add_argument(
        "--new-job",
        action="store_true",
        help="send the same list again on purpose (default: a rerun resumes the same job)",
    )
    send.add_argument(
        "--resend-uncertain",
        action="store_true",
        help="also resend batches whose earlier call may or may not have reached CAMS (logged). "
        "WhatsApp/Viber: looked up in ListChatappMessage first (needs the job's CustSpaceId); "
        "only recipients CAMS does not have are sent again",
    )
    send.add_argument(
        "--no-reconcile",
        action="store_true",
        help="with --resend-uncertain: resend without looking them up (recipients CAMS already "
        "has then get the message twice)",
    )
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="read, validate and plan; write the report (pending/invalid/duplicate); send nothing",
    )
    send.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="send without the preview and its question (needed off a terminal: scripts, CI, cron)",
    )
    out = parser.add_argument_group("output")
    store_argument(out)
    out.add_argument("--report", metavar="FILE.csv", help="write the per-recipient report here at the end")
    out.add_argument(
        "--errors",
        metavar="FILE.csv",
        help="write the refused rows here before sending (invalid and duplicate: line, reason, message, "
        "then the row's own cells)",
    )
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: a bar on a terminal, else a line every 10 s)",
    )


SEND_HELP = """\
Send a template to every recipient of a CSV.

The file: UTF-8 (BOM or not), delimiter comma/semicolon/tab sniffed from the header, quoted fields allowed;
or an Excel workbook (.xlsx, recognised by content): its first sheet, or the one --sheet names, row 1 the header.
The recipient column is 'to' (or phone, phone number, mobile, whatsapp, msisdn, number, recipient...;
case, spaces, _ and - aside), or the one --recipient-column names; every other column becomes a
TemplateParams key for that row. WhatsApp/Viber numbers are normalized to E.164 and sent without '+';
Messenger/Instagram ids are kept as given. Duplicates are sent once. Invalid rows are reported, never sent.

The whole file is read and planned into the store before the first send. Running the same command again
resumes the job (same file content and template options): sent batches are never sent again, failed ones
are retried, uncertain ones only with --resend-uncertain (after a ListChatappMessage lookup for WhatsApp and
Viber: see `chatapp-mass reconcile --help`).

On a terminal, `send` first prints a preview (counts, refused rows by reason, the template parameters and
the first recipient's request) and asks "Send to N recipients? [y/N]"; --yes skips it, and is needed off a
terminal. `chatapp-mass check FILE ...` (the same options) prints the preview alone: no credentials, nothing
sent.

Credentials: the Alibaba Cloud default credential chain (ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET[/SECURITY_TOKEN],
~/.alibabacloud profiles, RAM role), for CAMS, OSS and Tablestore alike. Endpoints: $CHATAPP_CAMS_ENDPOINT
(http://host:port or a bare host for HTTPS), $CHATAPP_OSS_ENDPOINT (for oss://BUCKET/KEY files) and
$CHATAPP_TABLESTORE_ENDPOINT (for --store tablestore://INSTANCE), else the region's public endpoints
(ALIBABA_CLOUD_REGION_ID, default ap-southeast-1). `chatapp-mass local-cloud` prints all of them for the
loopback emulators.

Example:
  chatapp-mass send customers.csv --channel-type whatsapp --template-code T1 --language en \\
      --from 8613800000000 --default-country CN --report report.csv
"""


def job_inputs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    job_fields: dict[str, Any] = {}
    for name, (flag, api, _h) in JOB_FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "channel_type":  # WhatsApp, WHATSAPP -> whatsapp
            value = value.strip().lower()
            if value not in {channel.value for channel in ChannelType}:
                raise OptionsError(
                    f"{flag} {getattr(args, name)!r}: use one of "
                    f"{', '.join(channel.value for channel in ChannelType)} (any case)"
                )
        if name in _INT_FIELDS:
            try:
                value = int(value)
            except ValueError:
                raise OptionsError(f"{flag}: {value!r} is not a whole number") from None
        job_fields[api] = value
    options = parse_job_options(job_fields, _FLAG_NAMES)
    delimiter = None
    if args.delimiter is not None:
        delimiter = _DELIMITERS.get(args.delimiter.lower() if len(args.delimiter) > 1 else args.delimiter)
        if delimiter is None:
            raise OptionsError(f"--delimiter {args.delimiter!r}: use comma, semicolon or tab")
    intake = parse_intake_options(
        {
            "default_country": args.default_country,
            "allow_empty_params": args.allow_empty_params,
            "delimiter": delimiter,
            "recipient_column": args.recipient_column,
            "sheet": args.sheet,
        },
        _FLAG_NAMES,
    )
    return options, intake


OpenFile = Callable[[], AbstractContextManager[IO[bytes]]]


def open_source(path: str, oss_client: Callable[[], OssClient]) -> OpenFile:
    """How to open the recipient file (a local path or ``oss://BUCKET/KEY``); a local file must exist."""
    if path.startswith("oss://"):
        location = OssLocation.parse(path)
        oss = oss_client()
        return lambda: oss.open(location)
    if not os.path.isfile(path):
        raise OptionsError(f"{path}: no such file")

    @contextlib.contextmanager
    def open_local() -> Iterator[IO[bytes]]:
        with open(path, "rb") as stream:
            yield stream

    return open_local


def checked_inputs(args: argparse.Namespace) -> tuple[JobOptions, IntakeOptions]:
    options, intake = job_inputs_from_args(args)
    if args.batch_size > API_MAX_RECIPIENTS:
        raise OptionsError(
            f"--batch-size {args.batch_size}: the API takes at most {API_MAX_RECIPIENTS} per call"
        )
    return options, intake


BeforePlan = Callable[[OpenFile, JobOptions, IntakeOptions, int], bool]


def run_send(
    args: argparse.Namespace,
    services: Services,
    *,
    out: IO[str],
    err: IO[str],
    before_plan: BeforePlan | None = None,
) -> int:
    """``chatapp-mass send``. ``before_plan(open_file, options, intake, max_request_bytes)``, once the keys
    are checked and before anything is planned (the CLI's preview and question, :mod:`.check`): False
    stops here, nothing sent (exit 1)."""
    options, intake = checked_inputs(args)
    limits = messaging_limits_from(os.environ)  # before the plan: a bad setting sends nothing
    open_file = open_source(args.file, services.oss_client)
    if not args.dry_run:  # a dry run plans offline: it needs no keys
        check_cams_access(services, options)
    max_request_bytes = args.max_request_bytes or request_budget(services.cams.settings.params_in)
    if before_plan is not None and not before_plan(open_file, options, intake, max_request_bytes):
        return EXIT_NOT_ALL_SENT
    path = args.file
    started = time.time()
    plan = PlanSettings(
        batch_size=args.batch_size,
        max_request_bytes=max_request_bytes,
        new_job=args.new_job,
        canary=canary_from_flags(args.canary, args.canary_max_failure, args.canary_timeout),
    )
    job, resumed = plan_job(
        services.store, source=path, open_stream=open_file, options=options, intake=intake, settings=plan
    )
    print(
        f"{'resuming' if resumed else 'planned'} job {job.job_id}: {job.total_rows:,} rows, {job.valid:,} valid, "
        f"{job.invalid:,} invalid, {job.duplicate:,} duplicate, {job.suppressed:,} suppressed, "
        f"{job.batches:,} batches",
        file=err,
    )
    if args.dry_run:
        _write_report_file(services.store, job.job_id, args.report, err)
        print(f"dry run: job {job.job_id} planned, nothing sent", file=out)
        return EXIT_OK

    if args.resend_uncertain:
        resend = resend_uncertain(
            services.store,
            Reconciler(services.store, services.cams),
            job,
            reconcile=not args.no_reconcile,
            before_reopen=lambda: before_reopen(services.store, job, deployed=False),
        )
        print(resend_line(resend), file=err)
    dispatch = DispatchSettings(args.qps, args.concurrency, args.max_stall, messaging_limits=limits)
    runner = JobRunner(services.store, services.cams, dispatch)
    bar: ProgressBar | None = None
    if not args.no_progress:
        bar = ProgressBar(err) if err.isatty() else ProgressLines(err)
    result = runner.run(job, on_progress=bar.update if bar else None)
    if bar:
        bar.close()
    _write_report_file(services.store, job.job_id, args.report, err)
    print(summary_line(result, time.time() - started, args.report), file=out)
    if result.job.status is JobStatus.interrupted and runner.halt_status is JobStatus.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.all_sent else EXIT_NOT_ALL_SENT


def check_cams_access(services: Services, options: JobOptions) -> None:
    """Credentials and endpoint, before anything is planned (``CamsClient.check_access``: one read-only
    ListChatappMessage, no message sent). Missing or refused keys, or an endpoint that does not connect, raise
    :class:`AccessError` (exit 2) with what to set."""
    check = getattr(services.cams, "check_access", None)
    if check is None:  # a test's fake CAMS
        return
    found: AccessCheck = check(options)
    if found.ok:
        return
    settings = services.cams.settings
    where = (
        f"{settings.protocol.lower()}://{settings.endpoint}"
        if settings.endpoint
        else f"the {settings.region_id} endpoint (ALIBABA_CLOUD_REGION_ID)"
    )
    nothing = "Nothing was planned or sent."
    if found.problem == "credentials":
        text = (
            f"no Alibaba Cloud credentials could be loaded. {nothing} To fix: {CREDENTIALS_FIX}; then rerun the "
            f"same command. (The credential chain said: {found.message.split(': ', 1)[-1][:300]})"
        )
    elif found.problem == "refused":
        text = (
            f"CAMS at {where} refused the credentials ({found.code}: {found.message}). {nothing} To fix: check "
            f"{env.ALIBABA_CLOUD_ACCESS_KEY_ID} and {env.ALIBABA_CLOUD_ACCESS_KEY_SECRET} (or the profile in "
            f"use), renew {env.ALIBABA_CLOUD_SECURITY_TOKEN} if the keys are STS ones (they expire), and the "
            "machine's clock; then rerun the same command."
        )
    else:
        text = (
            f"cannot connect to CAMS at {where} ({found.code}: {found.message}). {nothing} To fix: check "
            f"{env.CHATAPP_CAMS_ENDPOINT} (unset: the region's public endpoint), the network and any proxy "
            "(HTTPS_PROXY); then rerun the same command."
        )
    raise AccessError(text)


def _write_report_file(store: Store, job_id: str, path: str | None, err: IO[str]) -> None:
    if not path:
        return
    job = store.get_job(job_id)
    with open_out(path) as handle:
        write_report(report_rows(store, job) if job else store.report_rows(job_id), handle)


@contextlib.contextmanager
def open_out(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        yield handle
    os.replace(tmp, path)  # a report is never left half-written


def summary_line(result: RunResult, seconds: float, report: str | None) -> str:
    job, totals = result.job, result.totals

    def recipients(status: BatchStatus) -> int:
        return totals.get(status, (0, 0))[1]

    pending = sum(recipients(s) for s in OPEN_STATUSES)
    parts = [
        f"job {job.job_id} {job.status.value}: {recipients(BatchStatus.sent):,} sent",
        f"{recipients(BatchStatus.failed):,} failed",
        f"{recipients(BatchStatus.uncertain):,} uncertain",
        f"{pending:,} pending",
        f"{job.invalid:,} invalid",
        f"{job.suppressed:,} suppressed",
        f"{job.duplicate:,} duplicate ({job.total_rows:,} rows) in {seconds:.1f} s",
    ]
    line = ", ".join(parts)
    if job.reason:
        line += f" — {job.reason}"
    if report:
        line += f" — report: {report}"
    if recipients(BatchStatus.uncertain):
        line += (
            f" — uncertain: their call may have reached CAMS; look them up with `chatapp-mass reconcile "
            f"{job.job_id[:12]}` (then --resend what is not found)"
        )
    return line


def add_send_command_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipient file and every option of ``chatapp-mass send``."""
    parser.add_argument(
        "file",
        metavar="FILE.csv",
        help="recipient CSV: a local path or oss://BUCKET/KEY (header row; a to, phone, mobile... column)",
    )
    add_send_arguments(parser)


def send_parser() -> argparse.ArgumentParser:
    """``chatapp-mass send``'s arguments alone (the demo builds its send from them)."""
    parser = argparse.ArgumentParser(prog="chatapp-mass send", description=SEND_HELP)
    add_send_command_arguments(parser)
    return parser


def resend_line(resend: ResendResult) -> str:
    found = resend.reconciled
    looked = (
        f"ListChatappMessage found {found.found:,} of {found.found + found.not_found:,} uncertain recipients "
        f"({found.queries:,} queries); "
        if found.batches
        else ""
    )
    return f"{looked}{resend.recipients:,} recipients in {resend.batches:,} batches reopened for sending"


def before_reopen(store: Store, job: JobRecord, deployed: bool) -> None:
    """Out of its finished state before its batches reopen (see ``reconcile.resend_uncertain``)."""
    from chatapp_mass.services.jobs import FINISHED, reopen_job

    if deployed:
        reopen_job(store, job.job_id, reason="uncertain batches reopened by an operator")
    else:
        store.update_job(
            job.job_id,
            expect=FINISHED,
            status=JobStatus.interrupted,
            reason="uncertain batches reopened: rerun `chatapp-mass send` to send them",
        )
