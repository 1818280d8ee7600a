"""kafkaprod._native.crc32c against published check values, a bit-by-bit reference and the crc32c package."""
from __future__ import annotations

import functools
import platform
import random
import threading
from array import array

import crc32c as crc32c_package
import pytest

from kafkaprod._native.crc32c import (
    _crc32c_with, _kernels, crc32c, crc32c_combine_values, crc32c_portable, implementation,
)

# crc32c() itself, and every kernel this CPU can run through the test hook (the dispatcher uses only the first).
KERNELS = [pytest.param(crc32c, id="crc32c"), pytest.param(crc32c_portable, id="crc32c_portable")] + [
    pytest.param(functools.partial(_crc32c_with, name), id=f"kernel-{name}") for name in _kernels()]

# The hardware kernels run three streams over 3 x 8 KiB blocks, then over 3 x 256-byte blocks (shift tables) or
# one last block of whatever is left from 128 bytes on (pclmul), then words, then 4/2/1-byte steps. The
# every-length test covers everything under 1 KiB; these lengths sit on and around the switches above it.
BLOCK_EDGES = sorted({
    n + d
    for n in (768, 1536, 24576, 2 * 24576, 24576 + 768, 24576 + 768 + 8)
    for d in (-9, -8, -1, 0, 1, 7, 8, 9)
})


def reference_prefix_crcs(data: bytes) -> list[int]:
    """CRC-32C of data[:n] for every n in 0..len(data), one bit at a time (reflected poly 0x82F63B78)."""
    register = 0xFFFFFFFF
    out = [register ^ 0xFFFFFFFF]
    for byte in data:
        register ^= byte
        for _ in range(8):
            register = (register >> 1) ^ (0x82F63B78 if register & 1 else 0)
        out.append(register ^ 0xFFFFFFFF)
    return out


def reference_crc(data: bytes) -> int:
    return reference_prefix_crcs(data)[-1]


@pytest.fixture(scope="module")
def rng() -> random.Random:
    return random.Random(3720)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("data, expected", [
    (b"123456789", 0xE3069283),  # the CRC catalogue's check value
    (b"", 0x00000000),
    # RFC 3720 (iSCSI) appendix B.4
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_matches_published_check_values(kernel, data, expected):
    assert kernel(data) == expected


@pytest.mark.parametrize("kernel", KERNELS)
def test_crc32c_matches_bitwise_reference_for_every_length_and_alignment(kernel, rng):
    data = rng.randbytes(1024 + 8)
    view = memoryview(data)
    for start in range(8):  # every alignment of the start modulo a machine word
        expected = reference_prefix_crcs(data[start:start + 1024])
        got = [kernel(view[start:start + n]) for n in range(1025)]
        assert got == expected, f"start {start}"


@pytest.fixture(scope="module")
def boundary_case(rng):
    """Random data with the reference CRC of every prefix, from offset 0 and from (unaligned) offset 3."""
    data = rng.randbytes(max(BLOCK_EDGES) + 3)
    return data, reference_prefix_crcs(data), reference_prefix_crcs(data[3:])


@pytest.mark.parametrize("kernel", KERNELS)
def test_crc32c_matches_bitwise_reference_around_block_boundaries(kernel, boundary_case):
    data, prefix, prefix_from_3 = boundary_case
    view = memoryview(data)
    for n in BLOCK_EDGES:
        assert kernel(view[:n]) == prefix[n], n
        assert kernel(view[3:3 + n]) == prefix_from_3[n], n


@pytest.mark.parametrize("size", [1 << 20, (1 << 20) + 7, 3 << 20])
def test_large_buffers_agree_with_portable_kernel_and_crc32c_package(rng, size):
    data = rng.randbytes(size)
    expected = crc32c_package.crc32c(data)
    assert crc32c(data) == expected
    assert crc32c_portable(data) == expected
    assert crc32c(memoryview(data)[5:]) == crc32c_package.crc32c(data[5:])


def test_every_kernel_agrees_with_portable_on_random_inputs(rng):
    data = rng.randbytes(200_000)
    view = memoryview(data)
    for _ in range(300):
        start = rng.randrange(64)
        n = rng.choice([rng.randrange(100), rng.randrange(5000), rng.randrange(len(data) - 64)])
        seed = rng.randrange(1 << 32)
        expected = crc32c_portable(view[start:start + n], seed)
        assert crc32c(view[start:start + n], seed) == expected
        for name in _kernels():
            assert _crc32c_with(name, view[start:start + n], seed) == expected, name


@pytest.mark.parametrize("kernel", KERNELS)
def test_incremental_crc_equals_one_shot(kernel, rng):
    data = rng.randbytes(100_000)
    whole = kernel(data)
    assert whole == crc32c_package.crc32c(data)
    for _ in range(50):
        cuts = sorted(rng.sample(range(len(data) + 1), rng.randint(1, 6)))
        crc = 0
        for a, b in zip([0] + cuts, cuts + [len(data)]):
            crc = kernel(data[a:b], crc)
        assert crc == whole, cuts
    # And in step with the crc32c package's running value.
    assert kernel(data[40_000:], crc32c_package.crc32c(data[:40_000])) == whole


@pytest.mark.parametrize("kernel", KERNELS)
def test_crc32c_reads_any_contiguous_buffer_as_bytes(kernel):
    data = bytes(range(256)) * 40
    expected = reference_crc(data)
    assert kernel(bytearray(data)) == expected
    assert kernel(memoryview(data)) == expected
    assert kernel(array("I", data)) == expected  # item type is irrelevant: the bytes are checksummed
    assert kernel(memoryview(data).cast("I")) == expected


def test_crc32c_gives_the_same_result_from_many_threads(rng):
    # Large inputs run with the GIL released.
    data = rng.randbytes(3 << 20)
    expected = crc32c_portable(data)
    results: list[int] = []

    def work() -> None:
        for _ in range(5):
            results.append(crc32c(data))
            results.append(crc32c(bytearray(data)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 40


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def test_implementation_uses_the_cpu_crc_instructions_when_present():
    assert implementation() == _kernels()[0]
    assert _kernels()[-1] == "portable"
    machine = platform.machine().lower()
    flags = cpu_flags()
    if machine in ("x86_64", "amd64") and {"sse4_2", "pclmulqdq"} <= flags:
        assert implementation() == "sse4.2+pclmul"
        assert _kernels() == ("sse4.2+pclmul", "sse4.2", "portable")
    elif machine in ("x86_64", "amd64") and "sse4_2" in flags:
        assert implementation() == "sse4.2"
    elif machine in ("aarch64", "arm64") and "crc32" in flags:
        assert implementation() == "armv8-crc"
    elif not flags:
        pytest.skip("cannot read this CPU's features")


@pytest.mark.parametrize("kernel", KERNELS)
def test_bad_arguments_raise_clear_errors(kernel):
    with pytest.raises(TypeError, match="data must be a bytes-like"):
        kernel("text")
    with pytest.raises(TypeError, match="data must be a bytes-like"):
        kernel(None)
    with pytest.raises(ValueError, match=r"crc must be a CRC-32C value in \[0, 2\*\*32\), got -1"):
        kernel(b"x", -1)
    with pytest.raises(ValueError, match="crc must be"):
        kernel(b"x", 1 << 32)
    with pytest.raises(TypeError, match="crc must be an int"):
        kernel(b"x", 1.0)
    with pytest.raises(BufferError):
        kernel(memoryview(b"abcdef")[::2])  # not contiguous


def test_unknown_kernel_name_is_a_value_error():
    with pytest.raises(ValueError, match="no CRC-32C kernel 'avx9000' on this CPU"):
        _crc32c_with("avx9000", b"x")


@pytest.mark.parametrize(("len_a", "len_b"), [(0, 0), (1, 0), (0, 1), (40, 100), (40, 1_000_000), (13, 65_537)])
def test_combine_gives_the_crc_of_the_concatenation_without_reading_it(len_a, len_b):
    rng = random.Random(len_a * 1_000_003 + len_b)
    a, b = rng.randbytes(len_a), rng.randbytes(len_b)
    assert crc32c_combine_values(crc32c_package.crc32c(a), crc32c_package.crc32c(b), len_b) == \
        crc32c_package.crc32c(a + b)


def test_combine_refuses_a_negative_length():
    with pytest.raises(ValueError, match="len_b"):
        crc32c_combine_values(0, 0, -1)
