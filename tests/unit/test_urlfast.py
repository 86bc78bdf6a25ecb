"""The URL fast paths return exactly what the libraries' own functions return (chatapp_mass.urlfast)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests.models
import requests.utils
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util import url as urllib3_url

from chatapp_mass import urlfast

urlfast.install()
ENCODE_ORIGINAL = urllib3_url._encode_invalid_chars.__wrapped__
REQUOTE_ORIGINAL = requests.utils.requote_uri.__wrapped__

# characters that matter: escapes (upper/lower, broken), reserved, unreserved, illegal, non-ASCII
ALPHABET = "%%%%0123456789abcdefABCDEFxyzXYZ-._~!#$&'()*+,/:;=?@[]{}\"<> ^`|\\\x7féü中"
RANDOM = st.text(alphabet=ALPHABET, min_size=urlfast._MIN_LENGTH, max_size=urlfast._MIN_LENGTH + 400)
# mostly already-encoded text (the fast path), with the odd token that must take the slow one
TOKENS = ["%22", "%2C", "%3A", "%7B", "%7D", "%E4%B8%AD", "a", "Z", "9", "-", "_", ".", "~", "&", "=", "+",
          "/", "?", "@", "!", "*", "(", "[", "%41", "%2d", "%e9", "%", "%G0", " ", "é", "#", "{", "\x7f"]
ENCODED = st.lists(st.sampled_from(TOKENS[:21]), min_size=urlfast._MIN_LENGTH, max_size=900).flatmap(
    lambda tokens: st.lists(st.sampled_from(TOKENS), max_size=2).map(
        lambda odd: "".join(tokens[: len(tokens) // 2] + odd + tokens[len(tokens) // 2:])))
LONG = st.one_of(RANDOM, ENCODED)


def _sender_list_url(count: int) -> str:
    recipients = [{"To": f"86138{i:08d}", "TemplateParams": {"name": f"Zoë {i} & co"}} for i in range(count)]
    value = json.dumps(recipients, ensure_ascii=False, separators=(",", ":"))
    return "http://127.0.0.1:8123/?SenderList=" + quote(value, safe="~") + "&ChannelType=whatsapp"


def test_installed_once_and_wrapping_the_originals():
    urlfast.install()
    assert urllib3_url._encode_invalid_chars.__wrapped__ is ENCODE_ORIGINAL
    assert requests.models.requote_uri is requests.utils.requote_uri  # the name requests.models calls


@pytest.mark.parametrize("allowed", [urllib3_url._QUERY_CHARS, urllib3_url._PATH_CHARS,
                                     urllib3_url._FRAGMENT_CHARS])
@settings(max_examples=300, deadline=None)
@given(component=LONG)
def test_encode_invalid_chars_same_as_urllib3(allowed, component):
    assert urllib3_url._encode_invalid_chars(component, allowed) == ENCODE_ORIGINAL(component, allowed)


@settings(max_examples=500, deadline=None)
@given(uri=LONG)
def test_requote_uri_same_as_requests(uri):
    try:
        expected = REQUOTE_ORIGINAL(uri)
    except Exception as error:  # noqa: BLE001 - the same failure is expected
        with pytest.raises(type(error)):
            requests.utils.requote_uri(uri)
        return
    assert requests.utils.requote_uri(uri) == expected


@pytest.mark.parametrize("uri", [
    _sender_list_url(50),
    _sender_list_url(50).replace("%22", "%2d"),  # an escaped unreserved character: requests decodes it
    _sender_list_url(50).replace("%22", "%2"),  # a broken escape
    _sender_list_url(50).replace("%22", "%e9"),  # a lower-case escape: urllib3 upper-cases it
    _sender_list_url(50) + "é",  # non-ASCII: both encode it
])
def test_the_sdk_query_string_and_its_near_misses(uri):
    query = uri.split("?", 1)[1]
    assert urllib3_url._encode_invalid_chars(query, urllib3_url._QUERY_CHARS) == \
        ENCODE_ORIGINAL(query, urllib3_url._QUERY_CHARS)
    assert requests.utils.requote_uri(uri) == REQUOTE_ORIGINAL(uri)


@settings(max_examples=200, deadline=None)
@given(text=ENCODED)
def test_the_fast_path_is_taken_only_where_the_original_changes_nothing(text):
    keeps = urlfast._KeepsPattern()
    if urlfast.encode_is_identity(text, urllib3_url._QUERY_CHARS, keeps):
        assert ENCODE_ORIGINAL(text, urllib3_url._QUERY_CHARS) == text
    if urlfast.requote_is_identity(text):
        assert REQUOTE_ORIGINAL(text) == text


def test_the_sdk_query_string_takes_the_fast_path():
    uri = _sender_list_url(1000)
    query = uri.split("?", 1)[1]
    assert len(uri) > 90_000
    assert urlfast.requote_is_identity(uri)
    assert urlfast.encode_is_identity(query, urllib3_url._QUERY_CHARS, urlfast._KeepsPattern())
    assert not urlfast.requote_is_identity(uri.replace("%22", "%41"))  # %41 is "A": requests decodes it
