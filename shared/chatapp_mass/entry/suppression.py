"""``chatapp-mass suppress add|remove|list``: the suppression list of a space, from the command line.

Numbers are read as the product reads recipients (``core.phones``: ``+CC`` or ``00CC`` international, digits
alone international unless ``--default-country``) and stored in the wire form. A number that is not a phone
number refuses the whole command (nothing changes), naming it and why.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.entry.bootstrap import build_services
from chatapp_mass.entry.send import EXIT_OK, positive_int, store_argument
from chatapp_mass.services.report import utc_timestamp
from chatapp_mass.services.suppress import normalize_numbers, suppression_of
from chatapp_mass.store.suppression import DEFAULT_SPACE, PAGE_MAX, REASONS, SuppressionStore

SUPPRESS_HELP = """\
Numbers on a space's suppression list are never sent to again, in any job of that space (the job's
--cust-space-id, or 'default'): a job planned after they were added reports them 'suppressed' and leaves them
out of every batch; a job planned before leaves them out of its calls from then on (also 'suppressed').
Nothing is ever counted as failed for it. Viber unsubscribes and inbound STOP keywords are added by the
api function; an operator adds or removes numbers here or with POST/DELETE /suppressions.

Numbers: as arguments, or --file (one per line, or a CSV: the column named to/phone/number/mobile, else the
first; a first line without digits is a header). Read like recipients: +CC or 00CC international; digits
alone international unless --default-country.

Examples:
  chatapp-mass suppress add +8613800000001 +447400123456 --reason operator
  chatapp-mass suppress add --file optouts.csv --reason import --space my-space
  chatapp-mass suppress remove 8613800000001
  chatapp-mass suppress list --space my-space --json
"""

_NUMBER_COLUMNS = ("to", "phone", "number", "mobile", "phone number", "recipient")


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    suppress = add_parser(
        "suppress",
        help="manage the suppression list: numbers never sent to again (add, remove, list)",
        description=SUPPRESS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = suppress.add_subparsers(dest="suppress_command", required=True, metavar="add|remove|list")

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--space",
            default=DEFAULT_SPACE,
            help="the list's space: the jobs' CustSpaceId (--cust-space-id), or %(default)s",
        )
        store_argument(parser)

    def numbers(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("numbers", nargs="*", metavar="NUMBER", help="phone numbers (+8613800000001 ...)")
        parser.add_argument(
            "--file", type=Path, help="numbers from a file: one per line, or a CSV (see `suppress --help`)"
        )
        parser.add_argument(
            "--default-country",
            metavar="CC",
            help="read digits without +/00 as this country's national numbers (ISO code, e.g. GB)",
        )

    add = commands.add_parser(
        "add", help="put numbers on the list (already listed ones are left as they are)"
    )
    numbers(add)
    add.add_argument(
        "--reason",
        default="operator",
        choices=REASONS,
        help="why (default %(default)s; kept with each number)",
    )
    add.add_argument("--source", default="", help="who or what asks (kept with each number), e.g. a ticket")
    common(add)

    remove = commands.add_parser("remove", help="take numbers off the list (later jobs may send to them)")
    numbers(remove)
    common(remove)

    listing = commands.add_parser("list", help="the numbers on the list, in number order, a page at a time")
    listing.add_argument("--after", default="", metavar="NUMBER", help="the page after this number")
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=100,
        help=f"numbers per page (at most {PAGE_MAX}; default %(default)s)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    common(listing)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    services = build_services(store_url=args.store)
    try:
        sup = suppression_of(services.store)
        if sup is None:
            raise OptionsError(f"--store {args.store}: this store keeps no suppression list")
        if args.suppress_command == "list":
            return _list(sup, args, out)
        wanted = _numbers(args)
        if args.suppress_command == "add":
            added = sup.add(args.space, wanted, reason=args.reason, source=args.source)
            print(
                f"added {added:,} of {len(wanted):,} numbers to the suppression list of space {args.space!r}"
                f" ({len(wanted) - added:,} already on it)",
                file=out,
            )
        else:
            removed = sup.remove(args.space, wanted)
            print(
                f"removed {removed:,} of {len(wanted):,} numbers from the suppression list of space "
                f"{args.space!r} ({len(wanted) - removed:,} were not on it)",
                file=out,
            )
        return EXIT_OK
    except ValueError as error:
        raise OptionsError(str(error)) from None
    finally:
        services.close()


def _numbers(args: argparse.Namespace) -> list[str]:
    raw = list(args.numbers)
    if args.file is not None:
        raw.extend(read_numbers_file(args.file))
    if not raw:
        raise OptionsError("give the numbers as arguments or --file FILE (e.g. suppress add +8613800000001)")
    try:
        good, bad = normalize_numbers(raw, args.default_country)
    except ValueError as error:  # an unknown --default-country
        raise OptionsError(f"--default-country: {error}") from None
    if bad:
        from chatapp_mass.core.phones import describe_invalid

        shown = "; ".join(f"{text!r}: {describe_invalid(text, args.default_country)}" for text in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise OptionsError(f"{len(bad)} not a phone number, nothing changed: {shown}{more}")
    return good


def read_numbers_file(path: Path) -> list[str]:
    """The numbers of a file: one per line, or a CSV's number column (named to/phone/number/mobile, else
    the first); a first line without digits is a header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise OptionsError(f"--file {path}: cannot read it as UTF-8 text: {error}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    column = 0
    first = rows[0]
    if not any(ch.isdigit() for ch in "".join(first)):  # a header
        names = [cell.strip().lower() for cell in first]
        column = next((names.index(name) for name in _NUMBER_COLUMNS if name in names), 0)
        rows = rows[1:]
    return [row[column] for row in rows if len(row) > column and row[column].strip()]


def _list(sup: SuppressionStore, args: argparse.Namespace, out: IO[str]) -> int:
    page = sup.list(args.space, after=args.after, limit=args.limit)
    items: list[dict[str, Any]] = [
        {"number": s.number, "reason": s.reason, "at": utc_timestamp(s.at), "source": s.source} for s in page
    ]
    after = page[-1].number if len(page) == args.limit else None
    if args.json:
        print(json.dumps({"space": args.space, "numbers": items, "next_after": after}, indent=2), file=out)
        return EXIT_OK
    if not items:
        print(f"no numbers on the suppression list of space {args.space!r}", file=out)
        return EXIT_OK
    print(f"{'NUMBER':<20}  {'REASON':<13}  {'ADDED':<20}  SOURCE", file=out)
    for item in items:
        print(f"{item['number']:<20}  {item['reason']:<13}  {item['at']:<20}  {item['source']}", file=out)
    if after:
        print(f"more: chatapp-mass suppress list --space {args.space} --after {after}", file=out)
    return EXIT_OK
