"""``chatapp-mass``: mass-send a ChatApp template to a recipient CSV through CAMS SendChatappMassMessage.

Exit status: 0 every valid recipient sent (invalid and duplicate rows do not change it); 1 the job ran but
some valid recipients are not sent (failed, uncertain, stopped, stalled); 2 bad usage or an unreadable file
(nothing sent); 130 interrupted (Ctrl-C: calls in flight were recorded; rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import IO, Any

from chatapp_mass import __version__, env, logs
from chatapp_mass.bootstrap import Services, build_services
from chatapp_mass.engine import (
    DispatchSettings,
    JobRunner,
    PlanSettings,
    RunResult,
    Snapshot,
    plan_job,
    restart_error_count,
)
from chatapp_mass.errors import ChatAppMassError, CsvFileError, JobNotFound, OptionsError
from chatapp_mass.options import parse_intake_options, parse_job_options
from chatapp_mass.oss_source import OssLocation
from chatapp_mass.planning import API_MAX_RECIPIENTS, BODY_BUDGET, QUERY_BUDGET, request_budget
from chatapp_mass.reconcile import Reconciler, ResendResult, resend_uncertain
from chatapp_mass.report import job_summary, write_report
from chatapp_mass.store import OPEN_STATUSES, BatchStatus, JobRecord, JobStatus, Store

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
}
_INT_FIELDS = {"fall_back_duration", "ttl"}
_FLAG_NAMES = {api: flag for _, (flag, api, _h) in JOB_FLAGS.items()}
_FLAG_NAMES.update({"default_country": "--default-country", "delimiter": "--delimiter"})
_DELIMITERS = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "tab": "\t", "\\t": "\t", "\t": "\t"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def _store_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
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
    send = parser.add_argument_group("sending")
    send.add_argument(
        "--qps",
        type=_positive_int,
        default=10,
        help="attempts per sliding second, retries included, shared by all runs on the store "
        "(default %(default)s, the documented per-account limit)",
    )
    send.add_argument(
        "--batch-size",
        type=_positive_int,
        default=API_MAX_RECIPIENTS,
        help=f"recipients per call, at most {API_MAX_RECIPIENTS} (default %(default)s)",
    )
    send.add_argument(
        "--max-request-bytes",
        type=_positive_int,
        default=None,
        help="bound on the URL-encoded SenderList of one call: in the form body "
        f"(${env.CHATAPP_CAMS_PARAMS_IN}=body, the default) {BODY_BUDGET:,}; in the URL "
        f"(${env.CHATAPP_CAMS_PARAMS_IN}=query) {QUERY_BUDGET:,}, which keeps request lines under "
        "16 KiB",
    )
    send.add_argument(
        "--max-stall",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="stop as 'stalled' (resumable) after this long without progress while throttled or "
        "unreachable (default %(default)g)",
    )
    send.add_argument(
        "--concurrency",
        type=_positive_int,
        default=0,
        help="calls in flight at most (default: 3 x qps, which holds the rate at ~3 s latency)",
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
    out = parser.add_argument_group("output")
    _store_arg(out)
    out.add_argument("--report", metavar="FILE.csv", help="write the per-recipient report here at the end")
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: a bar on a terminal, else a line every 10 s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatapp-mass",
        description="Mass-send a WhatsApp, Viber, Messenger or Instagram template to every recipient of a CSV "
        "through Alibaba Cloud CAMS (SendChatappMassMessage), with a per-recipient report.",
        epilog="Exit status: 0 all valid recipients sent; 1 some not sent (see the report); 2 bad usage or "
        "unreadable file (nothing sent); 130 interrupted (rerun the same command to resume).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    parser.add_argument(
        "--log-level",
        default=os.environ.get(env.CHATAPP_LOG_LEVEL, "WARNING").upper(),
        type=str.upper,
        choices=levels,
        help="JSON logs on stderr at this level (default: $CHATAPP_LOG_LEVEL or %(default)s)",
    )
    # The same flag after the command (`chatapp-mass send ... --log-level INFO`); SUPPRESS keeps the default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        type=str.upper,
        choices=levels,
        help="JSON logs on stderr at this level (DEBUG, INFO, WARNING, ERROR; default WARNING)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    class commands:  # every command takes the common flags
        @staticmethod
        def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
            return subparsers.add_parser(name, parents=[common], **kwargs)

    send = commands.add_parser(
        "send",
        help="send a template to every recipient of a CSV",
        description=SEND_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument(
        "file",
        metavar="FILE.csv",
        help="recipient CSV: a local path or oss://BUCKET/KEY (header row; a 'to' column)",
    )
    add_send_arguments(send)

    report = commands.add_parser("report", help="write a job's per-recipient report (any time)")
    report.add_argument("job", help="job id (or a unique prefix)")
    report.add_argument("--out", required=True, metavar="FILE.csv", help="where to write it ('-' = stdout)")
    _store_arg(report)

    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--limit", type=_positive_int, default=20)
    _store_arg(jobs)

    status = commands.add_parser("status", help="a job's state and counts")
    status.add_argument("job", help="job id (or a unique prefix)")
    status.add_argument("--json", action="store_true", help="print JSON")
    _store_arg(status)

    pause = commands.add_parser("pause", help="pause a running job: senders stop between batches (resumable)")
    pause.add_argument("job", help="job id (or a unique prefix)")
    pause.add_argument("--reason", default="paused by an operator", help="said in the job's status")
    _store_arg(pause)

    resume = commands.add_parser(
        "resume",
        help="resume a paused job (a deployed job's senders are started via "
        "CHATAPP_FC_ENDPOINT; a CLI job continues when you rerun `send`)",
    )
    resume.add_argument("job", help="job id (or a unique prefix)")
    _store_arg(resume)

    reconcile = commands.add_parser(
        "reconcile",
        help="look up a job's uncertain batches in ListChatappMessage (WhatsApp/Viber); --resend the rest",
        description=RECONCILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reconcile.add_argument("job", help="job id (or a unique prefix)")
    reconcile.add_argument(
        "--cust-space-id",
        metavar="ID",
        help="the CustSpaceId ListChatappMessage needs (default: the job's own)",
    )
    reconcile.add_argument(
        "--resend",
        action="store_true",
        help="then reopen what is still uncertain for sending (an operator decision, logged)",
    )
    reconcile.add_argument(
        "--no-reconcile",
        action="store_true",
        help="with --resend: resend without looking up first (Messenger/Instagram need it)",
    )
    reconcile.add_argument(
        "--list-qps",
        type=_positive_int,
        default=20,
        help="ListChatappMessage queries per second, account-wide (default %(default)s)",
    )
    _store_arg(reconcile)

    init = commands.add_parser(
        "init-tables",
        help="deploy step: create the store's Tablestore tables if missing and wait until they are "
        "ready (idempotent; the functions never create tables)",
    )
    _store_arg(init)

    from chatapp_mass.localcloud.cams import cli as local_cams_cli

    local = commands.add_parser("local-cams", help="run the loopback CAMS emulator (prints one JSON line)")
    local_cams_cli.add_arguments(local)

    from chatapp_mass.localcloud import cloud

    local_cloud = commands.add_parser(
        "local-cloud",
        help="run CAMS, OSS and Tablestore on loopback (prints one JSON line with endpoints, "
        "credentials and the environment to export)",
    )
    cloud.add_arguments(local_cloud)

    from chatapp_mass.localcloud import invoke

    invoke_parser = commands.add_parser(
        "invoke",
        help="run a function's handler once with an event file, locally (like `s local invoke`)",
        description=invoke.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    invoke.add_arguments(invoke_parser)

    from chatapp_mass import demo

    demo_parser = commands.add_parser(
        "demo",
        help="try it without an Alibaba account: a sample CSV sent to the "
        "local CAMS, with progress, summary and report",
    )
    demo.add_arguments(demo_parser)
    return parser


SEND_HELP = """\
Send a template to every recipient of a CSV.

The file: UTF-8 (BOM or not), delimiter comma/semicolon/tab sniffed from the header, quoted fields allowed.
The recipient column is 'to' (or phone, mobile, number, recipient); every other column becomes a
TemplateParams key for that row. WhatsApp/Viber numbers are normalized to E.164 and sent without '+';
Messenger/Instagram ids are kept as given. Duplicates are sent once. Invalid rows are reported, never sent.

The whole file is read and planned into the store before the first send. Running the same command again
resumes the job (same file content and template options): sent batches are never sent again, failed ones
are retried, uncertain ones only with --resend-uncertain (after a ListChatappMessage lookup for WhatsApp and
Viber: see `chatapp-mass reconcile --help`).

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


RECONCILE_HELP = """\
Look up a job's uncertain batches (a call that may or may not have reached CAMS) in ListChatappMessage.

WhatsApp and Viber only (the API covers no other channel), and it needs the CustSpaceId (the job's, or
--cust-space-id). By the batch's GroupMessageId when known, else one query per recipient: its number, the
job's From and template, from just before the batch's call until now. Recipients CAMS has become 'sent'
(code Reconciled); the rest stay 'uncertain' (code NotFound). Nothing is sent.

--resend then reopens what is still uncertain, and is logged as an operator decision. A job of this
machine's store goes on when you rerun its `chatapp-mass send` command; a deployed job's senders are
started via CHATAPP_FC_ENDPOINT.

Example:
  chatapp-mass reconcile 3f2a9c --store tablestore://my-instance
  chatapp-mass reconcile 3f2a9c --resend
"""


# --- the send flow (shared by `send` and `demo`) ---------------------------------------------------------
def job_inputs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    job_fields: dict[str, Any] = {}
    for name, (flag, api, _h) in JOB_FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
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
        },
        _FLAG_NAMES,
    )
    return options, intake


def run_send(args: argparse.Namespace, services: Services, *, out: IO[str], err: IO[str]) -> int:
    options, intake = job_inputs_from_args(args)
    if args.batch_size > API_MAX_RECIPIENTS:
        raise OptionsError(
            f"--batch-size {args.batch_size}: the API takes at most {API_MAX_RECIPIENTS} per call"
        )
    path = args.file
    open_file: Callable[[], AbstractContextManager[IO[bytes]]]
    if path.startswith("oss://"):
        location = OssLocation.parse(path)
        oss = services.oss_client()
        open_file = lambda: oss.open(location)
    else:
        if not os.path.isfile(path):
            raise OptionsError(f"{path}: no such file")

        @contextlib.contextmanager
        def open_local() -> Iterator[IO[bytes]]:
            with open(path, "rb") as stream:
                yield stream

        open_file = open_local

    started = time.time()
    max_request_bytes = args.max_request_bytes or request_budget(services.cams.settings.params_in)
    plan = PlanSettings(batch_size=args.batch_size, max_request_bytes=max_request_bytes, new_job=args.new_job)
    job, resumed = plan_job(
        services.store, source=path, open_stream=open_file, options=options, intake=intake, settings=plan
    )
    print(
        f"{'resuming' if resumed else 'planned'} job {job.job_id}: {job.total_rows:,} rows, {job.valid:,} valid, "
        f"{job.invalid:,} invalid, {job.duplicate:,} duplicate, {job.batches:,} batches",
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
            before_reopen=lambda: _before_reopen(services.store, job, deployed=False),
        )
        print(_resend_line(resend), file=err)
    dispatch = DispatchSettings(qps=args.qps, concurrency=args.concurrency, max_stall=args.max_stall)
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


def _write_report_file(store: Store, job_id: str, path: str | None, err: IO[str]) -> None:
    if not path:
        return
    with _open_out(path) as handle:
        write_report(store.report_rows(job_id), handle)


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[IO[str]]:
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


class ProgressBar:
    """One redrawn line on a terminal: bar, sent / failed / remaining, rate."""

    def __init__(self, stream: IO[str], width: int = 28) -> None:
        self.stream = stream
        self.width = width

    def update(self, snap: Snapshot) -> None:
        done = snap.sent + snap.failed + snap.uncertain
        share = done / snap.valid if snap.valid else 1.0
        filled = int(self.width * share)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"\r[{bar}] {share:6.1%}  sent {snap.sent:,}  failed {snap.failed + snap.uncertain:,}  "
            f"remaining {snap.remaining:,}  {snap.rate(time.time()):,.0f}/s  calls {snap.calls:,}"
        )
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class ProgressLines(ProgressBar):
    """Not a terminal (a log, CI, a pipe): one plain line every ``every`` seconds instead of a redrawn bar."""

    def __init__(self, stream: IO[str], every: float = 10.0) -> None:
        super().__init__(stream)
        self.every = every
        self._last = time.time()

    def update(self, snap: Snapshot) -> None:
        now = time.time()
        if now - self._last < self.every:
            return
        self._last = now
        done = snap.sent + snap.failed + snap.uncertain
        share = done / snap.valid if snap.valid else 1.0
        self.stream.write(
            f"progress: {share:.1%}  sent {snap.sent:,}  failed {snap.failed + snap.uncertain:,}  "
            f"remaining {snap.remaining:,}  {snap.rate(now):,.0f}/s  calls {snap.calls:,}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        pass


# --- other commands -----------------------------------------------------------------------------------
def resolve_job(store: Store, ref: str) -> JobRecord:
    job = store.get_job(ref)
    if job is None:
        matches = store.find_jobs(ref)
        if len(matches) > 1:
            raise JobNotFound(f"job {ref!r} is ambiguous: {', '.join(matches)}")
        if matches:
            job = store.get_job(matches[0])
    if job is None:
        raise JobNotFound(f"no job {ref!r} in this store (see `chatapp-mass jobs`)")
    return job


def cmd_status(args: argparse.Namespace, out: IO[str]) -> int:
    store = build_services(store_url=args.store).store
    counts = job_summary(store, resolve_job(store, args.job))
    if args.json:
        print(json.dumps(counts, indent=2), file=out)
    else:
        for key, value in counts.items():
            print(f"{key:>11}: {value:,}" if isinstance(value, int) else f"{key:>11}: {value}", file=out)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, out: IO[str]) -> int:
    from chatapp_mass.oss_jobs import pause_job

    store = build_services(store_url=args.store).store
    job = resolve_job(store, args.job)
    current = pause_job(store, job.job_id, reason=args.reason)
    if current is None or current.status is not JobStatus.paused:
        print(
            f"job {job.job_id} is {job.status.value}: only a running or scheduled job can be paused", file=out
        )
        return EXIT_USAGE
    print(
        f"job {job.job_id} paused: its senders stop taking batches within seconds; calls in flight finish. "
        f"Resume with `chatapp-mass resume {job.job_id[:12]}`",
        file=out,
    )
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, out: IO[str]) -> int:
    from chatapp_mass.oss_jobs import Dispatch, FunctionSettings, resume_job

    store = build_services(store_url=args.store).store
    job = resolve_job(store, args.job)
    if job.status is not JobStatus.paused:
        print(f"job {job.job_id} is {job.status.value}, not paused", file=out)
        return EXIT_USAGE
    if not os.environ.get(env.CHATAPP_FC_ENDPOINT):
        if store.update_job(
            job.job_id,
            expect=[JobStatus.paused],
            status=JobStatus.interrupted,
            reason="resumed: rerun `chatapp-mass send` with the same file and options to continue",
        ):
            restart_error_count(store, job.job_id)
        print(
            f"job {job.job_id} can go on: rerun the same `chatapp-mass send` command (no CHATAPP_FC_ENDPOINT: "
            "no deployed senders to start)",
            file=out,
        )
        return EXIT_OK
    from chatapp_mass.fc_invoke import FcInvoker, FcSettings

    settings = FunctionSettings.from_env()
    current = resume_job(store, Dispatch(store, FcInvoker(FcSettings.from_env()), settings), job.job_id)
    print(f"job {job.job_id} {current.status.value if current else 'unknown'}: senders started", file=out)
    return EXIT_OK


def _resend_line(resend: ResendResult) -> str:
    found = resend.reconciled
    looked = (
        f"ListChatappMessage found {found.found:,} of {found.found + found.not_found:,} uncertain recipients "
        f"({found.queries:,} queries); "
        if found.batches
        else ""
    )
    return f"{looked}{resend.recipients:,} recipients in {resend.batches:,} batches reopened for sending"


def cmd_reconcile(args: argparse.Namespace, out: IO[str]) -> int:
    services = build_services(store_url=args.store)
    try:
        store = services.store
        job = resolve_job(store, args.job)
        reconciler = Reconciler(store, services.cams, qps=args.list_qps)
        if args.resend:
            deployed = bool(os.environ.get(env.CHATAPP_FC_ENDPOINT))
            resend = resend_uncertain(
                store,
                reconciler,
                job,
                reconcile=not args.no_reconcile,
                cust_space_id=args.cust_space_id,
                before_reopen=lambda: _before_reopen(store, job, deployed),
            )
            print(_resend_line(resend), file=out)
            if resend.batches:
                _continue_after_resend(store, job, deployed, out)
            return EXIT_OK
        result = reconciler.reconcile(job, cust_space_id=args.cust_space_id)
        if result.skipped or result.error:
            print(f"job {job.job_id}: {result.skipped or result.error}", file=out)
            return EXIT_NOT_ALL_SENT
        print(
            f"job {job.job_id}: {result.batches:,} uncertain batches looked up ({result.queries:,} queries): "
            f"{result.found:,} recipients found (now sent), {result.not_found:,} not found (still uncertain"
            f"{'; resend them with --resend' if result.not_found else ''})",
            file=out,
        )
        return EXIT_OK if not result.not_found else EXIT_NOT_ALL_SENT
    finally:
        services.close()


def _before_reopen(store: Store, job: JobRecord, deployed: bool) -> None:
    """Out of its finished state before its batches reopen (see ``reconcile.resend_uncertain``)."""
    from chatapp_mass.oss_jobs import FINISHED, reopen_job

    if deployed:
        reopen_job(store, job.job_id, reason="uncertain batches reopened by an operator")
    else:
        store.update_job(
            job.job_id,
            expect=FINISHED,
            status=JobStatus.interrupted,
            reason="uncertain batches reopened: rerun `chatapp-mass send` to send them",
        )


def _continue_after_resend(store: Store, job: JobRecord, deployed: bool, out: IO[str]) -> None:
    if not deployed:
        print(f"job {job.job_id}: rerun its `chatapp-mass send` command to send them", file=out)
        return
    from chatapp_mass.fc_invoke import FcInvoker, FcSettings
    from chatapp_mass.oss_jobs import Dispatch, FunctionSettings, continue_job

    status = continue_job(
        store, Dispatch(store, FcInvoker(FcSettings.from_env()), FunctionSettings.from_env()), job.job_id
    )
    print(f"job {job.job_id} {status}: senders started", file=out)


def cmd_jobs(args: argparse.Namespace, out: IO[str]) -> int:
    store = build_services(store_url=args.store).store
    jobs = store.list_jobs(args.limit)
    if not jobs:
        print("no jobs in this store", file=out)
        return EXIT_OK
    print(
        f"{'JOB':<24}  {'STATUS':<11}  {'CREATED':<19}  {'ROWS':>9}  {'SENT':>9}  {'NOT SENT':>9}  SOURCE",
        file=out,
    )
    for job in jobs:
        c = job_summary(store, job)
        print(
            f"{job.job_id:<24}  {job.status.value:<11}  {c['created_at']:<19}  {job.total_rows:>9,}  "
            f"{c['sent']:>9,}  {c['failed'] + c['uncertain'] + c['pending']:>9,}  {job.source}",
            file=out,
        )
    return EXIT_OK


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    store = build_services(store_url=args.store).store
    job = resolve_job(store, args.job)
    with _open_out(args.out) as handle:
        counts = write_report(store.report_rows(job.job_id), handle)
    if args.out != "-":
        summary = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
        print(f"report of job {job.job_id} written to {args.out}: {summary}", file=out)
    return EXIT_OK


def cmd_init_tables(args: argparse.Namespace, out: IO[str]) -> int:
    from chatapp_mass.bootstrap import init_tables

    print(json.dumps(init_tables(args.store)), file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    commands: dict[str, Callable[[], int]] = {
        "send": lambda: _send_command(args, out, err),
        "report": lambda: cmd_report(args, out),
        "jobs": lambda: cmd_jobs(args, out),
        "status": lambda: cmd_status(args, out),
        "pause": lambda: cmd_pause(args, out),
        "resume": lambda: cmd_resume(args, out),
        "reconcile": lambda: cmd_reconcile(args, out),
        "init-tables": lambda: cmd_init_tables(args, out),
        "local-cams": lambda: _local_cams(args),
        "local-cloud": lambda: _local_cloud(args),
        "invoke": lambda: _invoke(args),
        "demo": lambda: _demo(args, out, err),
    }
    try:
        return commands[args.command]()
    except CsvFileError as error:
        print(f"chatapp-mass: unreadable file, nothing sent: {error}", file=err)
        return EXIT_USAGE
    except (OptionsError, JobNotFound) as error:
        print(f"chatapp-mass: {error}", file=err)
        return EXIT_USAGE
    except ChatAppMassError as error:
        print(f"chatapp-mass: {error}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nchatapp-mass: interrupted; rerun the same command to resume", file=err)
        return EXIT_INTERRUPTED


def _send_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    services = build_services(store_url=args.store)
    try:
        return run_send(args, services, out=out, err=err)
    finally:
        services.close()


def _local_cams(args: argparse.Namespace) -> int:
    from chatapp_mass.localcloud.cams import cli as local_cams_cli

    return int(local_cams_cli.run(args))


def _local_cloud(args: argparse.Namespace) -> int:
    from chatapp_mass.localcloud import cloud

    return cloud.run(args)


def _invoke(args: argparse.Namespace) -> int:
    from chatapp_mass.localcloud import invoke

    return invoke.run(args)


def _demo(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from chatapp_mass import demo

    return demo.run(args, out=out, err=err)
