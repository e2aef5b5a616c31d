"""HPACK and gRPC codec pieces of the native gRPC transport (tritonlite._core.grpc_codec):
RFC 7541 Appendix C examples, vectors produced by an independent encoder (the ``hpack``
package), dynamic-table size updates and eviction, malformed blocks, and random input."""

from __future__ import annotations

import random

import pytest
from tritonlite._core import grpc_codec as codec

# RFC 7541 C.3: three requests without Huffman, sharing one dynamic table.
C3 = [
    "828684410f7777772e6578616d706c652e636f6d",
    "828684be58086e6f2d6361636865",
    "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
]
# RFC 7541 C.4: the same requests with Huffman-encoded strings.
C4 = [
    "828684418cf1e3c2e5f23a6ba0ab90f4ff",
    "828684be5886a8eb10649cbf",
    "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
]
C_REQUESTS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
     (b":authority", b"www.example.com")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
     (b":authority", b"www.example.com"), (b"cache-control", b"no-cache")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
     (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")],
]  # fmt: skip
C_TABLE_SIZES = [57, 110, 164]

# Responses encoded by the hpack package with a 256-byte table and Huffman (like RFC C.6): the
# first block starts with a size update to 256; the third evicts entries.
RESPONSES = [
    (
        "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad17"
        "1863c78f0b97c8e9ae82ae43d3"
    ),
    "4883640effc1c0bf",
    (
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335"
        "dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"
    ),
]
DATE1, DATE2 = b"Mon, 21 Oct 2013 20:13:21 GMT", b"Mon, 21 Oct 2013 20:13:22 GMT"
RESPONSE_HEADERS = [
    [(b":status", b"302"), (b"cache-control", b"private"), (b"date", DATE1),
     (b"location", b"https://www.example.com")],
    [(b":status", b"307"), (b"cache-control", b"private"), (b"date", DATE1),
     (b"location", b"https://www.example.com")],
    [(b":status", b"200"), (b"cache-control", b"private"), (b"date", DATE2),
     (b"location", b"https://www.example.com"), (b"content-encoding", b"gzip"),
     (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")],
]  # fmt: skip
RESPONSE_TABLE = [(222, 4), (222, 4), (215, 3)]

# Every byte value 0..255, Huffman-encoded by the hpack package (RFC 7541 Appendix B codes).
ALL_BYTES_HUFFMAN = bytes.fromhex(
    "ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabff"
    "ffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffff"
    "d7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b7"
    "1d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff"
    "4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ff"
    "ff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffff"
    "eeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7ff"
    "fee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17f"
    "ffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3"
    "ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8ffff"
    "fe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97f"
    "ffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffff"
    "a7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffb"
    "bfffff7ffffff0fffffbbf"
)


@pytest.mark.parametrize("blocks", [C3, C4], ids=["plain", "huffman"])
def test_rfc7541_request_examples(blocks: list[str]) -> None:
    decoder = codec.HpackDecoder()
    for block, expected, table_size in zip(blocks, C_REQUESTS, C_TABLE_SIZES):
        assert decoder.decode(bytes.fromhex(block)) == expected
        assert decoder.table_size == table_size


def test_size_update_and_eviction() -> None:
    decoder = codec.HpackDecoder()
    for block, expected, (size, entries) in zip(RESPONSES, RESPONSE_HEADERS, RESPONSE_TABLE):
        assert decoder.decode(bytes.fromhex(block)) == expected
        assert (decoder.table_size, decoder.table_entries) == (size, entries)
    # A size update to 0 empties the table; referring to the evicted entries then fails.
    assert decoder.decode(bytes([0x20])) == []
    assert (decoder.table_size, decoder.table_entries) == (0, 0)
    with pytest.raises(ValueError, match="out of range"):
        decoder.decode(bytes([0xBE]))  # index 62: the first dynamic entry


def test_size_update_limits() -> None:
    assert codec.HpackDecoder(4096).decode(bytes.fromhex("3fe11f")) == []  # 31 + 97 + 3968 = 4096
    with pytest.raises(ValueError, match="exceeds the limit"):
        codec.HpackDecoder(4096).decode(bytes.fromhex("3fe21f"))  # 4097
    with pytest.raises(ValueError, match="after a header field"):
        codec.HpackDecoder().decode(bytes([0x82, 0x20]))


def test_huffman_every_byte() -> None:
    assert codec.huffman_decode(ALL_BYTES_HUFFMAN) == bytes(range(256))
    assert codec.huffman_decode(b"") == b""


@pytest.mark.parametrize(
    "encoded",
    [
        b"\xff\xff\xff\xff",  # contains EOS (30 ones)
        b"\x00",  # '0' (5 bits 00000) + padding 000: padding must be 1s
        b"\x1f\xff",  # '0' + 11 bits of padding: more than 7
    ],
)
def test_huffman_invalid(encoded: bytes) -> None:
    with pytest.raises(ValueError):
        codec.huffman_decode(encoded)


@pytest.mark.parametrize(
    "block, message",
    [
        (b"\x80", "out of range"),  # index 0
        (b"\xff\xff\xff\xff\xff\xff\x7f", "bad header index"),  # integer overflow
        (b"\x40\x05ab", "past the end"),  # literal name longer than the block
        (b"\x00\x01a\x85\xff\xff", "past the end"),
        (b"\x00\x01a\x81\x00", "Huffman"),
        (b"\x41", "truncated"),  # literal with indexed name, no value
    ],
)
def test_malformed_blocks(block: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.HpackDecoder().decode(block)


def test_header_list_limit() -> None:
    # One 4000-byte literal referenced again and again: a small block that decodes to a lot.
    big = b"\x40\x01x\x7f\xa1\x1e" + b"v" * 4000  # literal with indexing, value of 4000 bytes
    block = big + b"\xbe" * 300
    with pytest.raises(ValueError, match="larger than"):
        codec.HpackDecoder().decode(block, max_list_size=64 << 10)


def test_random_input_never_crashes() -> None:
    rng = random.Random(1234)
    decoder = codec.HpackDecoder()
    for _ in range(3000):
        block = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        try:
            decoder.decode(block)
        except ValueError:
            decoder = codec.HpackDecoder()  # a connection error: the table is gone with it
        try:
            codec.huffman_decode(block)
        except ValueError:
            pass


def test_grpc_timeout_and_percent_encoding() -> None:
    assert codec.parse_grpc_timeout("100m") == 100_000_000
    assert codec.parse_grpc_timeout("1S") == 1_000_000_000
    assert codec.parse_grpc_timeout("2H") == 7_200_000_000_000
    assert codec.parse_grpc_timeout("99999999n") == 99_999_999
    assert codec.parse_grpc_timeout("1000000H") == 3_600_000_000_000_000_000  # ~114 years
    # Beyond 2^62 ns it is no deadline (the product would wrap past 2^64 for 99999999H).
    assert codec.parse_grpc_timeout("99999999H") is None
    assert codec.parse_grpc_timeout("5124096H") is None
    for bad in ("", "m", "10", "123456789m", "1x", "-1S", "1.5S"):
        assert codec.parse_grpc_timeout(bad) is None
    assert codec.percent_encode("ok: [1,2]") == "ok: [1,2]"
    assert codec.percent_encode("100%\n\u00e9") == "100%25%0A%C3%A9"


def test_triton_status_mapping() -> None:
    expected = {
        "INVALID_ARG": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "UNSUPPORTED": 12,
        "INTERNAL": 13, "UNAVAILABLE": 14, "UNKNOWN": 2, "CANCELLED": 1,
    }  # fmt: skip
    assert {k: codec.grpc_status_for(k) for k in expected} == expected
