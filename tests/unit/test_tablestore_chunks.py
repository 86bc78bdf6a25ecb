"""The Tablestore store's chunk rows: each input record's JSON, written directly on the hot path, is exactly
what ``json.dumps`` writes, and a chunk decodes back to the records it was made of."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chatapp_mass.core.planning import sender_json
from chatapp_mass.store.interface import RowRecord, RowStatus
from chatapp_mass.store.tablestore import _chunk_records, _encode_chunks, _record_json

_text = st.text(st.characters(codec="utf-8"), max_size=10)
_recipient = st.one_of(
    st.none(),
    st.builds(lambda to, params: {"To": to, "TemplateParams": params}, _text, st.dictionaries(_text, _text)),
    st.dictionaries(_text, st.one_of(_text, st.integers(), st.lists(_text, max_size=2))),
)
_rows = st.builds(
    RowRecord,
    st.just("job"),
    st.integers(1, 10**9),
    _text,
    st.sampled_from(list(RowStatus)),
    _text,
    _text,
    st.one_of(st.none(), st.integers(0, 10**6)),
    _recipient,
    st.none(),
)
# ... and as the planner makes them: the recipient's JSON encoded once, carried for the store to write as is
_rows = st.one_of(
    _rows,
    _rows.map(lambda r: r if r.recipient is None else r._replace(recipient_json=sender_json(r.recipient))),
)


def dumps(row: RowRecord) -> str:
    record: list[Any] = [
        row.line,
        row.to,
        row.status.value,
        row.code,
        row.message,
        row.batch_seq,
        row.recipient,
    ]
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=400, deadline=None)
@given(_rows)
def test_record_json_is_json_dumps_of_the_record(row: RowRecord) -> None:
    assert _record_json(row) == dumps(row)


@settings(max_examples=50, deadline=None)
@given(st.lists(_rows, max_size=300, unique_by=lambda r: r.line))
def test_chunks_decode_to_the_records_in_line_order(rows: list[RowRecord]) -> None:
    decoded = [
        record for chunk in _encode_chunks(rows) for record in _chunk_records({"data": bytearray(chunk.data)})
    ]
    assert decoded == [json.loads(dumps(row)) for row in sorted(rows, key=lambda r: r.line)]
