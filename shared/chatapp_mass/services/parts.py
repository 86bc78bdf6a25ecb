"""Splitting a batch into parts: the one way a batch's recipients come to have different outcomes.

Two things split a batch:

- **A refusal for one recipient** (``InvalidParameter.PhoneNumberError``: CAMS refuses the whole call for
  one number). Nothing was sent, so the batch is split in two halves, both ``pending``; a half refused
  again is halved again, until the bad recipient is alone and only it ``failed`` (about 2 x log2(size)
  extra calls for one bad number in a full batch).
- **A reconciliation** (``reconcile``) that found some of an ``uncertain`` batch's recipients in
  ListChatappMessage and not others: runs of found lines become ``sent`` parts, the rest ``uncertain`` ones.

Protocol (every step idempotent, so a sweeper can finish what a dead splitter began, even while it lives):

1. the batch goes to ``splitting`` with its parts described in ``parts`` (a conditional write from the
   state its owner knows: only one splitter ever wins, and a batch is never split twice);
2. the parts are written as new batches (``put_plan``: a part that exists is left as it is, so a part a
   sender already took is never reset);
3. the batch goes ``splitting`` -> ``split``.

``splitting`` is open (the job cannot finish), its rows report ``pending``; ``split`` is resolved and counted
nowhere (its parts count). Part seqs and row ownership: ``store.part_seq``, ``store.Leaves``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from chatapp_mass.runtime import faults
from chatapp_mass.store.interface import BatchRecord, BatchStatus, Store, generation, part_seq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    first_line: int
    last_line: int
    size: int
    status: BatchStatus = BatchStatus.pending
    code: str = ""
    message: str = ""
    group_message_id: str = ""


def halves(lines: Sequence[int]) -> list[Part]:
    """Two parts of about equal size over ``lines`` (a batch's lines, ascending; at least two)."""
    middle = len(lines) // 2
    return [Part(lines[0], lines[middle - 1], middle), Part(lines[middle], lines[-1], len(lines) - middle)]


def runs(lines: Sequence[int], found: set[int], *, hit: Part, miss: Part) -> list[Part]:
    """Consecutive runs of ``lines`` (ascending) that are, or are not, in ``found``: each a part shaped like
    ``hit`` or ``miss`` (their status, code and message) over its own lines."""
    parts: list[Part] = []
    start = 0
    for index in range(1, len(lines) + 1):
        if index == len(lines) or (lines[index] in found) != (lines[start] in found):
            like = hit if lines[start] in found else miss
            parts.append(
                Part(
                    lines[start],
                    lines[index - 1],
                    index - start,
                    like.status,
                    like.code,
                    like.message,
                    like.group_message_id,
                )
            )
            start = index
    return parts


def split_batch(
    store: Store,
    batch: BatchRecord,
    parts: Iterable[Part],
    *,
    expect: Iterable[BatchStatus],
    expect_owner: str | None = None,
    code: str = "",
    message: str = "",
) -> bool:
    """Replace ``batch`` (now in one of ``expect``, and claimed by ``expect_owner`` if given) by ``parts``;
    False if it was no longer so."""
    spec = json.dumps(
        [
            [p.first_line, p.last_line, p.size, p.status.value, p.code, p.message, p.group_message_id]
            for p in parts
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    if not store.transition_batch(
        batch.job_id,
        batch.seq,
        expect=expect,
        to=BatchStatus.splitting,
        parts=spec,
        expect_owner=expect_owner,
        code=code,
        message=message,
    ):
        return False
    faults.checkpoint("batch.splitting")
    finish_split(store, replace(batch, status=BatchStatus.splitting, parts=spec))
    return True


def finish_split(store: Store, batch: BatchRecord) -> None:
    """Steps 2 and 3 for a ``splitting`` batch (its splitter's, or a sweeper's after the splitter died)."""
    children = part_batches(batch)
    store.put_plan([], children)
    if store.transition_batch(batch.job_id, batch.seq, expect=[BatchStatus.splitting], to=BatchStatus.split):
        log.info(
            "batch split into parts",
            extra={
                "job_id": batch.job_id,
                "batch": batch.seq,
                "recipients": batch.size,
                "code": batch.code,
                "parts": [{"batch": c.seq, "recipients": c.size, "status": c.status.value} for c in children],
            },
        )


def part_batches(batch: BatchRecord) -> list[BatchRecord]:
    """The batches a split (or splitting) batch's ``parts`` describe.

    Each carries the batch's ``sending_at``: a reconciliation's uncertain part was sent by the batch's call,
    and reconciling it again must look in that call's interval (``reconcile.call_interval``); a pending part
    (a halving) gets its own when its own call starts."""
    depth = generation(batch.seq) + 1
    return [
        BatchRecord(
            job_id=batch.job_id,
            seq=part_seq(first, depth),
            size=size,
            status=BatchStatus(status),
            code=code,
            message=message,
            group_message_id=group,
            first_line=first,
            last_line=last,
            root=batch.rows_seq,
            sending_at=batch.sending_at,
        )
        for first, last, size, status, code, message, group in json.loads(batch.parts or "[]")
    ]
