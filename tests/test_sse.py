"""The Sans-I/O SSE decoder under any chunking, every line ending, comments, BOM and multi-line data."""

from __future__ import annotations

import json
import random

import pytest

from ipy_responses_ws.sse import SSEDecoder, SSEMessage, encode_sse


def decode(chunks):
    dec = SSEDecoder()
    out = []
    for c in chunks:
        out.extend(dec.feed(c))
    out.extend(dec.flush())
    return out


def random_chunks(data: bytes, rng: random.Random, max_size: int = 7):
    i = 0
    while i < len(data):
        n = rng.randint(0, max_size)  # zero-length chunks too
        yield data[i : i + n]
        i += n


EVENTS = [
    ("response.created", {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1"}}),
    (
        "response.output_text.delta",
        {"type": "response.output_text.delta", "delta": "héllo ✓ 👋", "sequence_number": 1},
    ),
    (
        "response.output_text.delta",
        {"type": "response.output_text.delta", "delta": "\n\nline", "sequence_number": 2},
    ),
    (
        "response.completed",
        {"type": "response.completed", "sequence_number": 3, "response": {"id": "resp_1"}},
    ),
]


def stream_bytes(newline: str, bom: bool = False) -> bytes:
    body = "".join(
        f": keep-alive{newline}event: {t}{newline}data: {json.dumps(d, ensure_ascii=False)}{newline}{newline}"
        for t, d in EVENTS
    )
    return (b"\xef\xbb\xbf" if bom else b"") + body.encode()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("seed", range(25))
def test_random_chunking_every_line_ending(newline, seed):
    rng = random.Random(seed * 31 + len(newline))
    data = stream_bytes(newline, bom=seed % 2 == 0)
    msgs = decode(random_chunks(data, rng))
    assert [(m.event, json.loads(m.data)) for m in msgs] == EVENTS


def test_one_byte_at_a_time_and_whole():
    data = stream_bytes("\r\n", bom=True)
    one = decode(data[i : i + 1] for i in range(len(data)))
    whole = decode([data])
    assert one == whole and len(one) == 4


def test_cr_at_chunk_end_then_lf_is_one_line_end():
    # If the LF after a chunk-final CR were a second line end, the event would dispatch without data->
    # here it must stay ONE event with both data lines.
    msgs = decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert msgs == [SSEMessage(None, "a\nb", None, None)]


def test_multiline_data_comments_fields():
    raw = b": comment\nid: 7\nretry: 1500\nevent: x\ndata\ndata:no-space\ndata:  two spaces\nfoo: ignored\n\n"
    (m,) = decode([raw])
    assert m == SSEMessage("x", "\nno-space\n two spaces", "7", 1500)


def test_no_dispatch_without_data_and_event_type_resets():
    msgs = decode([b"event: lonely\n\n", b"data: d\n\n"])
    assert msgs == [SSEMessage(None, "d", None, None)]


def test_bom_split_across_chunks_and_only_at_start():
    msgs = decode([b"\xef", b"\xbb", b"\xbfdata: x\n\n", b"\xef\xbb\xbfdata: y\n\n"])
    assert [m.data for m in msgs] == ["x"]  # a BOM later is part of a field name, so that line is ignored


def test_flush_dispatches_unterminated_last_event():
    assert decode([b'data: {"type":"response.completed"}'])[0].data == '{"type":"response.completed"}'
    assert decode([b"data: x\n"]) == [SSEMessage(None, "x", None, None)]


def test_utf8_split_inside_character():
    raw = "data: 👋é\n\n".encode()
    cut = raw.index(b"\xf0") + 2
    assert decode([raw[:cut], raw[cut:]])[0].data == "👋é"


def test_encode_roundtrip_with_random_chunks():
    rng = random.Random(5)
    data = b"".join(encode_sse(t, d) for t, d in EVENTS) + encode_sse(None, "multi\nline")
    msgs = decode(random_chunks(data, rng, 3))
    assert [(m.event, json.loads(m.data)) for m in msgs[:-1]] == EVENTS
    assert msgs[-1] == SSEMessage(None, "multi\nline", None, None)


@pytest.mark.parametrize("seed", range(40))
def test_mixed_line_endings_any_chunking(seed):
    # Every line ends with a random one of CR, LF, CRLF; the result must not depend on where chunks split.
    rng = random.Random(1000 + seed)
    parts = []
    prev = ""
    for t, d in EVENTS:
        for line in (": ping", f"event: {t}", f"data: {json.dumps(d, ensure_ascii=False)}", ""):
            # CR then an empty line ending in LF would read as one CRLF: the stream itself is ambiguous there
            end = "\r" if prev == "\r" and not line else rng.choice(["\r", "\n", "\r\n"])
            parts.append(line + end)
            prev = end
    data = "".join(parts).encode()
    msgs = decode(random_chunks(data, rng, max_size=rng.choice([1, 2, 5, 64])))
    assert [(m.event, json.loads(m.data)) for m in msgs] == EVENTS
