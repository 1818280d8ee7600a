"""Hostile input: whatever bytes arrive, decoding either returns a body or raises ProtocolError -- never another
exception, never an allocation the frame's own size does not bound."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkaprod.errors import ProtocolError
from kafkaprod.protocol import decode_request, decode_response, encode_request, encode_response

from protocol_bodies import ALL_VERSIONS, message_body, version_id

_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_protocol_error(api_key: int, version: int, frame) -> dict | None:
    try:
        return decode_response(api_key, version, frame)
    except ProtocolError:
        return None


def _valid_response(api_key: int, version: int):
    def encode(body: dict) -> bytes:
        return b"".join(encode_response(api_key, version, 1, body))[4:]
    return message_body(api_key, version, request=False).map(encode)


@pytest.mark.parametrize("api_version", ALL_VERSIONS, ids=version_id)
def test_garbage_frames_only_raise_protocol_error(api_version):
    api_key, version = api_version

    @_SETTINGS
    @given(frame=st.binary(max_size=120))
    def check(frame):
        _decode_or_protocol_error(api_key, version, frame)

    check()


@pytest.mark.parametrize("api_version", ALL_VERSIONS, ids=version_id)
def test_truncated_frames_raise_protocol_error(api_version):
    api_key, version = api_version

    @_SETTINGS
    @given(frame=_valid_response(api_key, version), data=st.data())
    def check(frame, data):
        cut = data.draw(st.integers(0, len(frame) - 1))
        got = _decode_or_protocol_error(api_key, version, frame[:cut])
        # A prefix follows the same parse as the whole frame until it runs out, so it can never succeed -- except
        # ApiVersions, whose v0 fallback may read a prefix as a different, complete body.
        assert got is None or api_key == 18

    check()


@pytest.mark.parametrize("api_version", ALL_VERSIONS, ids=version_id)
def test_corrupted_frames_only_raise_protocol_error(api_version):
    api_key, version = api_version

    @_SETTINGS
    @given(frame=_valid_response(api_key, version), data=st.data())
    def check(frame, data):
        buf = bytearray(frame)
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(buf) - 1))
            buf[pos] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        _decode_or_protocol_error(api_key, version, bytes(buf))

    check()


@pytest.mark.parametrize("api_version", ALL_VERSIONS, ids=version_id)
def test_oversized_lengths_and_counts_only_raise_protocol_error(api_version):
    api_key, version = api_version

    @_SETTINGS
    @given(frame=_valid_response(api_key, version), data=st.data())
    def check(frame, data):
        # a huge int32 or a five-byte varint written over any spot: a length or count claiming ~2 GiB or ~4 Gi items
        pos = data.draw(st.integers(0, max(0, len(frame) - 1)))
        huge = data.draw(st.sampled_from([b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff\x0f", b"\x80\x00\x00\x00"]))
        _decode_or_protocol_error(api_key, version, frame[:pos] + huge + frame[pos + len(huge):])

    check()


@pytest.mark.parametrize("api_version", ALL_VERSIONS, ids=version_id)
def test_garbage_after_a_valid_frame_is_refused(api_version):
    api_key, version = api_version

    @_SETTINGS
    @given(frame=_valid_response(api_key, version), tail=st.binary(min_size=1, max_size=8))
    def check(frame, tail):
        got = _decode_or_protocol_error(api_key, version, frame + tail)
        assert got is None or api_key == 18  # see test_truncated_frames_raise_protocol_error

    check()


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=200))
def test_garbage_requests_only_raise_protocol_error_or_unsupported_version(frame):
    from kafkaprod.errors import UnsupportedVersionError

    try:
        decode_request(frame)
    except (ProtocolError, UnsupportedVersionError):
        pass


@pytest.mark.parametrize("api_version", ALL_VERSIONS, ids=version_id)
def test_truncated_requests_raise_protocol_error(api_version):
    api_key, version = api_version

    @_SETTINGS
    @given(body=message_body(api_key, version, request=True), data=st.data())
    def check(body, data):
        frame = b"".join(encode_request(api_key, version, 1, "c", body))[4:]
        cut = data.draw(st.integers(0, len(frame) - 1))
        with pytest.raises(ProtocolError):
            decode_request(frame[:cut])

    check()


def test_coverage_guided_fuzzing_finds_no_crash_hang_or_runaway_allocation(tmp_path):
    # A bounded atheris (libFuzzer) session over the splitter and every response decoder; a crash, an input
    # taking over 5 s or a process above 1 GiB makes libFuzzer exit non-zero and write the input it found.
    import subprocess
    import sys
    from pathlib import Path

    harness = Path(__file__).with_name("fuzz_responses.py")
    run = subprocess.run(
        [sys.executable, "-I", str(harness), "-runs=20000", "-max_len=4096", "-rss_limit_mb=1024", "-timeout=5",
         "-seed=1", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 20000 runs" in run.stderr
