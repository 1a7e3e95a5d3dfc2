"""Codecs round-trip every input (property-tested), and bad names and data fail clearly."""

import os
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iokit.codecs import (
    LZWCodec,
    ZstdCodec,
    codec_names,
    get_codec,
    lzw_compress,
    lzw_decompress,
    train_dictionary,
)
from iokit.errors import FormatError, ParameterError

SAMPLES = [f"record {i}: the quick brown fox {i % 7} jumps over the lazy dog {i % 13}. "
           .encode() * (1 + i % 3) for i in range(400)]
DICT = train_dictionary(SAMPLES, 2048)
ALL = [*codec_names(), "zlib:1", "zstd:19", "lzw:9"]


def codec(name):
    return get_codec(name, dictionary=DICT) if name.startswith("zstd-dict") else get_codec(name)


@pytest.mark.parametrize("name", [*ALL, "zstd-dict:3"])
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000))
def test_round_trip_on_arbitrary_bytes(name, data):
    c = codec(name)
    assert c.decompress(c.compress(data)) == data


@pytest.mark.parametrize("name", [*ALL, "zstd-dict:3"])
def test_round_trip_on_empty_and_every_byte_value(name):
    c = codec(name)
    every = bytes(range(256))
    for data in (b"", b"\x00", every, every * 5, bytes(reversed(every)) * 3):
        assert c.decompress(c.compress(data)) == data


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=2000), max_bits=st.integers(9, 11))
def test_lzw_round_trips_past_a_full_table(data, max_bits):
    # A 512-code table fills after ~256 new strings: these inputs reset it many times.
    assert lzw_decompress(lzw_compress(data, max_bits), max_bits) == data


def test_lzw_fills_and_resets_its_16_bit_table():
    data = os.urandom(150_000)  # random bytes: about one new table entry per byte or two
    assert lzw_decompress(lzw_compress(data)) == data
    text = b"abracadabra " * 20_000  # repetitive: long strings, few codes, big gain
    packed = lzw_compress(text)
    assert lzw_decompress(packed) == text and len(packed) < len(text) / 10


def test_lzw_codes_grow_from_8_bits():
    assert lzw_compress(b"A") == b"A"  # the first code is one byte, 8 bits
    assert len(lzw_compress(b"AB")) == 3  # 8 + 9 bits -> 17 bits -> 3 bytes


def test_names_and_levels():
    assert [get_codec(n).name for n in ("none", "zlib", "zstd", "lzw", "zstd:19")] == \
        ["none", "zlib:6", "zstd:3", "lzw", "zstd:19"]
    assert get_codec("zstd-dict:5", dictionary=DICT).name == "zstd-dict:5"
    assert LZWCodec(12).name == "lzw:12"


@pytest.mark.parametrize("name", ["gzip", "zstd:20", "zlib:0", "zstd:x", "none:1", ""])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ParameterError, match="zstd:1..19"):
        get_codec(name)


def test_dictionary_codec_needs_a_dictionary_and_trains_on_samples():
    with pytest.raises(ParameterError, match="needs a dictionary"):
        get_codec("zstd-dict:3")
    c = get_codec("zstd-dict:3", samples=SAMPLES, dict_size=2048)
    plain = get_codec("zstd:3")
    rec = SAMPLES[5]
    assert len(c.compress(rec)) < len(plain.compress(rec))
    assert get_codec("zstd-dict:3", dictionary=c.dictionary).decompress(c.compress(rec)) == rec


def test_training_on_too_little_says_what_to_do():
    with pytest.raises(ParameterError, match="more samples"):
        train_dictionary([b"ab"] * 3, 4096)


@pytest.mark.parametrize("name", ["zlib:6", "zstd:3", "zstd-dict:3", "lzw"])
def test_corrupt_data_raises_format_error(name):
    c = codec(name)
    packed = bytearray(c.compress(bytes(range(256)) * 4))
    packed[len(packed) // 2 :] = b"\xff" * (len(packed) - len(packed) // 2)
    with pytest.raises(FormatError, match=name):
        c.decompress(bytes(packed))


def test_zstd_codecs_pickle_for_worker_processes():
    c = ZstdCodec(7, DICT)
    c.compress(b"x")  # make its per-thread compressor first
    back = pickle.loads(pickle.dumps(c))
    assert back.name == "zstd-dict:7" and back.decompress(c.compress(b"hello")) == b"hello"
