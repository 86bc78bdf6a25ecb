"""``chatapp-mass``: mass-send a ChatApp template to a recipient CSV through CAMS SendChatappMassMessage.

Exit status: 0 every valid recipient sent (invalid and duplicate rows do not change it); 1 the job ran but
some valid recipients are not sent (failed, uncertain, stopped, stalled), or the answer to "Send to N
recipients?" was not yes (nothing sent), or `check` found no valid recipient; 2 bad usage, an unreadable file,
or `send` off a terminal without --yes (nothing sent); 130 interrupted (Ctrl-C: calls in flight were
recorded; rerun to resume).

Longer than 500 lines: the argument parser of every command (the CLI's one place for flags and their help)
and each command's few lines over the services; the long commands live in their own modules (send, check,
demo, local cloud).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

from chatapp_mass import __version__
from chatapp_mass.core.errors import ChatAppMassError, CsvFileError, JobNotFound, OptionsError
from chatapp_mass.core.tokens import Scope, new_token
from chatapp_mass.entry.bootstrap import build_services
from chatapp_mass.entry.check import (
    CHECK_HELP,
    add_check_command_arguments,
    before_send,
    refuse_unattended,
    run_check,
)
from chatapp_mass.entry.send import (
    EXIT_INTERRUPTED,
    EXIT_NOT_ALL_SENT,
    EXIT_OK,
    EXIT_USAGE,
    SEND_HELP,
    add_send_command_arguments,
    before_reopen,
    open_out,
    positive_int,
    resend_line,
    run_send,
    store_argument,
)
from chatapp_mass.runtime import env, logs
from chatapp_mass.services.plan import restart_error_count
from chatapp_mass.services.reconcile import Reconciler, resend_uncertain
from chatapp_mass.services.report import job_summary, report_rows, utc_timestamp, write_report
from chatapp_mass.services.retention import check_rows_kept, purge, status_view
from chatapp_mass.store.interface import JobRecord, JobStatus, Store
from chatapp_mass.store.retention import retention_days

# What to write for a flag a user left out (shown in the one-line error, instead of the whole usage).
FLAG_EXAMPLES = {
    "FILE.csv": "customers.csv",
    "--channel-type": "whatsapp",
    "--language": "en",
    "--from": "8613800000000",
    "--out": "report.csv",
    "job": "3f2a9c",
}


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming what is wrong (and, for a missing flag, an example),
    then where the full help is, instead of the whole usage block first (exit 2, as argparse)."""

    def error(self, message: str) -> NoReturn:
        missing = message.removeprefix("the following arguments are required: ")
        if missing != message:
            names = [name.strip() for name in missing.split(",")]
            shown = [
                (f"{name} {FLAG_EXAMPLES[name]}" if name.startswith("-") else FLAG_EXAMPLES[name])
                if name in FLAG_EXAMPLES
                else name
                for name in names
            ]
            message = f"missing {', '.join(names)} (e.g. {' '.join(shown)})"
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="chatapp-mass",
        description="Mass-send a WhatsApp, Viber, Messenger or Instagram template to every recipient of a CSV "
        "through Alibaba Cloud CAMS (SendChatappMassMessage), with a per-recipient report.",
        epilog="Exit status: 0 all valid recipients sent; 1 some not sent (see the report), or not confirmed; "
        "2 bad usage (send off a terminal needs --yes) or "
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
    common = CliParser(add_help=False)
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
    add_send_command_arguments(send)

    check = commands.add_parser(
        "check",
        help="preview a send: counts, refused rows by reason, parameters, the first request (sends nothing)",
        description=CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_check_command_arguments(check)

    report = commands.add_parser("report", help="write a job's per-recipient report (any time)")
    report.add_argument("job", help="job id (or a unique prefix)")
    report.add_argument("--out", required=True, metavar="FILE.csv", help="where to write it ('-' = stdout)")
    store_argument(report)

    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--limit", type=positive_int, default=20)
    store_argument(jobs)

    status = commands.add_parser("status", help="a job's state and counts")
    status.add_argument("job", help="job id (or a unique prefix)")
    status.add_argument("--json", action="store_true", help="print JSON")
    store_argument(status)

    pause = commands.add_parser("pause", help="pause a running job: senders stop between batches (resumable)")
    pause.add_argument("job", help="job id (or a unique prefix)")
    pause.add_argument("--reason", default="paused by an operator", help="said in the job's status")
    store_argument(pause)

    resume = commands.add_parser(
        "resume",
        help="resume a paused job (a deployed job's senders are started via "
        "CHATAPP_FC_ENDPOINT; a CLI job continues when you rerun `send`)",
    )
    resume.add_argument("job", help="job id (or a unique prefix)")
    store_argument(resume)

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
        type=positive_int,
        default=20,
        help="ListChatappMessage queries per second, account-wide (default %(default)s)",
    )
    store_argument(reconcile)

    receipts = commands.add_parser(
        "receipts",
        help="delivery receipts: list those no job claims (an unregistered TaskId), oldest first",
    )
    receipts_commands = receipts.add_subparsers(dest="receipts_command", required=True, metavar="unmatched")
    unmatched = receipts_commands.add_parser(
        "unmatched", help="receipts kept aside: their TaskId names no job's call (oldest first)"
    )
    unmatched.add_argument("--limit", type=positive_int, default=100, help="at most this many (default 100)")
    unmatched.add_argument("--json", action="store_true", help="print JSON")
    store_argument(unmatched)

    token = commands.add_parser(
        "token",
        help="make an API token: prints it and the scope:hash entry for CHATAPP_API_TOKENS",
        description=TOKEN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="new")
    token_new = token_commands.add_parser("new", help="a new random token of a scope")
    token_new.add_argument(
        "--scope",
        required=True,
        choices=[scope.value for scope in Scope],
        help="read: list and watch jobs, fetch reports; send: also create, pause, resume, cancel, "
        "reconcile and resend; admin: everything",
    )
    token_new.add_argument("--json", action="store_true", help="print JSON")

    purge = commands.add_parser(
        "purge",
        help="delete the rows, batches and receipts of jobs finished over --older-than days ago (SQLite; "
        "Tablestore expires them by the tables' time to live); each job keeps its summary",
    )
    purge.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        default=None,
        help=f"days since a job finished (default: ${env.CHATAPP_RETENTION_DAYS} or 30; 0 purges nothing)",
    )
    purge.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    purge.add_argument("--json", action="store_true", help="print JSON")
    store_argument(purge)

    init = commands.add_parser(
        "init-tables",
        help="deploy step: create the store's Tablestore tables if missing and wait until they are "
        "ready (idempotent; the functions never create tables)",
    )
    store_argument(init)

    commands.add_parser(
        "openapi",
        help="print the HTTP API's OpenAPI 3.1 document (what GET /openapi.json serves; kept as "
        "docs/openapi.json: chatapp-mass openapi > docs/openapi.json)",
    )

    from chatapp_mass.entry import suppression

    suppression.add_commands(commands.add_parser)

    from chatapp_mass.entry import localcloud  # the commands that run the emulators

    localcloud.add_commands(commands.add_parser)

    from chatapp_mass.entry import demo

    demo_parser = commands.add_parser(
        "demo",
        help="try it without an Alibaba account: a sample CSV sent to the "
        "local CAMS, with progress, summary and report",
    )
    demo.add_arguments(demo_parser)
    return parser


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


TOKEN_HELP = """\
Make an API token. The token is printed once: give it to its user (it is the Bearer token, and the console's
sign-in). The API keeps only its hash: put the printed scope:hash entry in the api function's
CHATAPP_API_TOKENS (comma-separated; several tokens are valid at once).

To rotate a token: make a new one, add its entry beside the old one, deploy, hand out the new token, then
remove the old entry and deploy again (its requests and console sessions end then).

Example:
  chatapp-mass token new --scope read
"""


def cmd_token(args: argparse.Namespace, out: IO[str]) -> int:
    token, entry = new_token(Scope(args.scope))
    if args.json:
        out.write(json.dumps({"token": token, "scope": entry.scope.value, "entry": str(entry)}) + "\n")
        return EXIT_OK
    out.write(
        f"token ({entry.scope.value}, shown once): {token}\n"
        f"entry for {env.CHATAPP_API_TOKENS}: {entry}\n"
        f"Add the entry to {env.CHATAPP_API_TOKENS} on the api function (comma-separated beside the others).\n"
        "To rotate: add the new entry, deploy, hand out the new token, then remove the old entry and deploy.\n"
    )
    return EXIT_OK


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
    counts = status_view(store, resolve_job(store, args.job), days=retention_days(), now=time.time())
    if args.json:
        print(json.dumps(counts, indent=2), file=out)
    else:
        for key, value in counts.items():
            numeric = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(value, dict):  # delivery: accepted 10, delivered 9 (90.0%), ..., failed by code
                value = ", ".join(
                    f"{k} {v:,}" + (f" ({value[k + '_rate']:.1%})" if k + "_rate" in value else "")
                    if isinstance(v, int)
                    else f"{k} " + (" ".join(f"{code or '-'}:{n:,}" for code, n in v.items()) or "-")
                    for k, v in value.items()
                    if not k.endswith("_rate")
                )
            print(f"{key:>11}: {value:,}" if numeric else f"{key:>11}: {value}", file=out)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, out: IO[str]) -> int:
    from chatapp_mass.services.jobs import pause_job

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
    from chatapp_mass.services.jobs import Dispatch, FunctionSettings, resume_job

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
    from chatapp_mass.adapters.fc import FcInvoker, FcSettings

    settings = FunctionSettings.from_env()
    current = resume_job(store, Dispatch(store, FcInvoker(FcSettings.from_env()), settings), job.job_id)
    print(f"job {job.job_id} {current.status.value if current else 'unknown'}: senders started", file=out)
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace, out: IO[str]) -> int:
    services = build_services(store_url=args.store)
    try:
        store = services.store
        job = resolve_job(store, args.job)
        check_rows_kept(store, job, days=retention_days(), now=time.time())  # nothing left to look up
        reconciler = Reconciler(store, services.cams, qps=args.list_qps)
        if args.resend:
            deployed = bool(os.environ.get(env.CHATAPP_FC_ENDPOINT))
            resend = resend_uncertain(
                store,
                reconciler,
                job,
                reconcile=not args.no_reconcile,
                cust_space_id=args.cust_space_id,
                before_reopen=lambda: before_reopen(store, job, deployed),
            )
            print(resend_line(resend), file=out)
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


def _continue_after_resend(store: Store, job: JobRecord, deployed: bool, out: IO[str]) -> None:
    if not deployed:
        print(f"job {job.job_id}: rerun its `chatapp-mass send` command to send them", file=out)
        return
    from chatapp_mass.adapters.fc import FcInvoker, FcSettings
    from chatapp_mass.services.jobs import Dispatch, FunctionSettings, continue_job

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
        f"{'JOB':<24}  {'STATUS':<11}  {'CREATED':<20}  {'ROWS':>9}  {'SENT':>9}  {'NOT SENT':>9}  SOURCE",
        file=out,
    )
    for job in jobs:
        c = job_summary(store, job, delivery=False)
        print(
            f"{job.job_id:<24}  {job.status.value:<11}  {c['created_at']:<20}  {job.total_rows:>9,}  "
            f"{c['sent']:>9,}  {c['failed'] + c['uncertain'] + c['pending']:>9,}  {job.source}",
            file=out,
        )
    return EXIT_OK


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    store = build_services(store_url=args.store).store
    job = resolve_job(store, args.job)
    check_rows_kept(store, job, days=retention_days(), now=time.time())  # a purged job: said, not empty
    with open_out(args.out) as handle:
        counts = write_report(report_rows(store, job), handle)
    if args.out != "-":
        summary = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
        print(f"report of job {job.job_id} written to {args.out}: {summary}", file=out)
    return EXIT_OK


def cmd_purge(args: argparse.Namespace, out: IO[str]) -> int:
    days = retention_days() if args.older_than is None else args.older_than
    if days < 0:
        raise OptionsError(f"--older-than {days}: days, 0 or more (0 purges nothing)")
    store = build_services(store_url=args.store).store
    result = purge(store, days, now=time.time(), dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2), file=out)
        return EXIT_OK
    if result.note:
        print(result.note, file=out)
    verb = "would delete" if result.dry_run else "deleted"
    rows = ", ".join(f"{n:,} {table}" for table, n in sorted(result.deleted.items())) or "nothing"
    print(
        f"jobs finished before {result.to_dict()['before']}: {len(result.jobs):,}; {verb} {rows}"
        + ("" if result.dry_run else "; each job keeps its summary (chatapp-mass status JOB)"),
        file=out,
    )
    for job_id in result.jobs:
        print(f"  {job_id}", file=out)
    return EXIT_OK


def cmd_receipts(args: argparse.Namespace, out: IO[str]) -> int:
    """``receipts unmatched``: what the receipt store kept aside (whole numbers, as the report has them)."""
    from chatapp_mass.services.receipts import ReceiptService, receipts_of

    store = build_services(store_url=args.store).store
    found = receipts_of(store)
    if found is None:
        print(f"no receipt store for this store ({args.store})", file=out)
        return EXIT_USAGE
    items = ReceiptService(found).unmatched(args.limit)
    if args.json:
        print(json.dumps({"unmatched": items}, indent=2), file=out)
        return EXIT_OK
    if not items:
        print("no unmatched receipts", file=out)
        return EXIT_OK
    print(f"{'TASK ID':<20}  {'TO':<16}  {'STATUS':<9}  {'AT':<20}  {'CODE':<8}  REASON", file=out)
    for item in items:
        at = utc_timestamp(item["at_ms"] / 1000)
        print(
            f"{item['task_id']:<20}  {item['to']:<16}  {item['status']:<9}  {at:<20}  "
            f"{item['error_code']:<8}  {item['reason']}",
            file=out,
        )
    return EXIT_OK


def cmd_init_tables(args: argparse.Namespace, out: IO[str]) -> int:
    from chatapp_mass.entry.bootstrap import init_tables

    print(json.dumps(init_tables(args.store)), file=out)
    return EXIT_OK


def cmd_openapi(out: IO[str]) -> int:
    from chatapp_mass.entry.openapi import document_text

    out.write(document_text())
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
    stdin: IO[str] | None = None,
) -> int:
    """The CLI. ``stdin``: where `send` reads its confirmation (default ``sys.stdin``); it asks only when
    ``stdin`` and ``out`` are both a terminal."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    commands: dict[str, Callable[[], int]] = {
        "send": lambda: _send_command(args, out, err, stdin),
        "check": lambda: run_check(args, out=out, err=err),
        "report": lambda: cmd_report(args, out),
        "jobs": lambda: cmd_jobs(args, out),
        "status": lambda: cmd_status(args, out),
        "pause": lambda: cmd_pause(args, out),
        "resume": lambda: cmd_resume(args, out),
        "reconcile": lambda: cmd_reconcile(args, out),
        "init-tables": lambda: cmd_init_tables(args, out),
        "purge": lambda: cmd_purge(args, out),
        "openapi": lambda: cmd_openapi(out),
        "token": lambda: cmd_token(args, out),
        "suppress": lambda: _suppress(args, out),
        "receipts": lambda: cmd_receipts(args, out),
        "local-cams": lambda: _local(args),
        "local-cloud": lambda: _local(args),
        "invoke": lambda: _local(args),
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


def _send_command(args: argparse.Namespace, out: IO[str], err: IO[str], stdin: IO[str] | None) -> int:
    ask = refuse_unattended(args, stdin, out)  # before the store is even opened
    services = build_services(store_url=args.store)
    try:
        before_plan = before_send(args, services, ask=ask, stdin=stdin, out=out, err=err)
        return run_send(args, services, out=out, err=err, before_plan=before_plan)
    finally:
        services.close()


def _suppress(args: argparse.Namespace, out: IO[str]) -> int:
    from chatapp_mass.entry import suppression

    return suppression.run(args, out)


def _local(args: argparse.Namespace) -> int:
    from chatapp_mass.entry import localcloud

    return localcloud.run_command(args)


def _demo(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from chatapp_mass.entry import demo

    return demo.run(args, out=out, err=err)
