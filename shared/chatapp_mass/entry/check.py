"""Looking before sending: ``chatapp-mass check`` (the preview alone), and the preview and question
``chatapp-mass send`` asks on a terminal ("Send to N recipients? [y/N]"; ``--yes`` skips it and is needed off a
terminal), with the ``--errors`` file both write. The preview itself is :mod:`chatapp_mass.services.preview`'s;
the send flow is :mod:`.send`'s, which calls the question through its ``before_plan`` hook."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import IO

from chatapp_mass.adapters.oss import OssClient
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.options import IntakeOptions, JobOptions
from chatapp_mass.core.planning import request_budget
from chatapp_mass.entry.bootstrap import Services
from chatapp_mass.entry.send import (
    EXIT_NOT_ALL_SENT,
    EXIT_OK,
    BeforePlan,
    OpenFile,
    add_send_command_arguments,
    checked_inputs,
    open_out,
    open_source,
)
from chatapp_mass.services.plan import PlanSettings
from chatapp_mass.services.preview import Preview, preview_recipients, preview_text

CHECK_HELP = """\
Preview a send without sending: read and validate the file as `send` would and print the counts, the
refused rows grouped by reason (with up to 3 example lines each), the template parameters, and the
SendChatappMassMessage request the first valid recipient would be sent in. No credentials needed (an
oss:// file needs OSS access), nothing planned or sent. Takes `send`'s options (the sending ones are
accepted and ignored, so a send command line can be checked as it is). Exit 0 when at least one recipient
is valid, else 1; 2 on bad usage or an unreadable file.

Example:
  chatapp-mass check customers.csv --channel-type whatsapp --template-code T1 --language en \\
      --from 8613800000000 --default-country CN --errors refused.csv
"""
NOT_A_TERMINAL = (
    "not on a terminal, so `send` cannot ask before sending: pass --yes to send without asking (see first "
    "what would be sent with `chatapp-mass check` and the same options). Nothing was planned or sent."
)


def add_check_command_arguments(parser: argparse.ArgumentParser) -> None:
    """``chatapp-mass check``: the file and ``send``'s options (a send command line checks as it is)."""
    add_send_command_arguments(parser)


def preview_file(
    args: argparse.Namespace,
    open_file: OpenFile,
    options: JobOptions,
    intake: IntakeOptions,
    *,
    params_in: str,
    max_request_bytes: int,
) -> Preview:
    """The file's preview (one read), its errors file written meanwhile when ``--errors`` names one."""
    settings = PlanSettings(batch_size=args.batch_size, max_request_bytes=max_request_bytes)
    with open_file() as stream, _errors_out(args.errors) as errors:
        return preview_recipients(
            stream,
            source=args.file,
            options=options,
            intake=intake,
            settings=settings,
            params_in=params_in,
            errors=errors,
        )


@contextlib.contextmanager
def _errors_out(path: str | None) -> Iterator[IO[str] | None]:
    if not path:
        yield None
        return
    with open_out(path) as handle:
        yield handle


def run_check(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    """``chatapp-mass check``: the preview alone (no credentials, no store, nothing sent)."""
    from chatapp_mass.adapters.cams import params_in_from_env

    options, intake = checked_inputs(args)
    open_file = open_source(args.file, OssClient.from_env)
    params_in = params_in_from_env()
    preview = preview_file(
        args,
        open_file,
        options,
        intake,
        params_in=params_in,
        max_request_bytes=args.max_request_bytes or request_budget(params_in),
    )
    print(preview_text(preview, source=args.file), file=out)
    if args.errors:
        print(f"refused rows written to {args.errors}", file=err)
    return EXIT_OK if preview.valid else EXIT_NOT_ALL_SENT


def interactive(stdin: IO[str], out: IO[str]) -> bool:
    """Whether someone can answer: both the input and the output are a terminal."""
    return stdin.isatty() and out.isatty()


def refuse_unattended(args: argparse.Namespace, stdin: IO[str] | None, out: IO[str]) -> bool:
    """Whether `send` will ask before sending (no --yes, no --dry-run). Off a terminal it cannot, and
    refuses (:class:`OptionsError`, exit 2): after the flags are checked, before anything is read or planned."""
    checked_inputs(args)
    ask = not args.yes and not args.dry_run
    if ask and not interactive(sys.stdin if stdin is None else stdin, out):
        raise OptionsError(NOT_A_TERMINAL)
    return ask


def before_send(
    args: argparse.Namespace,
    services: Services,
    *,
    ask: bool,
    stdin: IO[str] | None,
    out: IO[str],
    err: IO[str],
) -> BeforePlan | None:
    """`send`'s ``before_plan``: the preview (and the errors file) then, when ``ask``, the question. None
    when there is nothing to do (``--yes`` or ``--dry-run``, no ``--errors``): the file is not read twice."""
    if not ask and not args.errors:
        return None
    answers = sys.stdin if stdin is None else stdin

    def previewed(
        open_file: OpenFile, options: JobOptions, intake: IntakeOptions, max_request_bytes: int
    ) -> bool:
        preview = preview_file(
            args,
            open_file,
            options,
            intake,
            params_in=services.cams.settings.params_in,
            max_request_bytes=max_request_bytes,
        )
        if args.errors:
            print(f"refused rows written to {args.errors}", file=err)
        if not ask or not preview.valid:  # nothing to send: the plan reports the refused rows, sends nothing
            return True
        return confirm(preview, args.file, answers, out)

    return previewed


def confirm(preview: Preview, source: str, stdin: IO[str], out: IO[str]) -> bool:
    """Print the preview and ask; only y or yes (any case) goes on."""
    print(preview_text(preview, source=source), file=out)
    out.write(f"Send to {preview.valid:,} recipient{'s' if preview.valid != 1 else ''}? [y/N] ")
    out.flush()
    answer = stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return True
    print("aborted: nothing sent", file=out)
    return False
