# cython: language_level=3
"""CRC-32C (Castagnoli), the checksum of Kafka record batches (magic v2).

The kernels are C in crc32c_impl.h: the CPU's CRC instructions (SSE4.2 on x86-64, the CRC extension on AArch64)
when it has them, slicing-by-8 tables otherwise, picked once at import. _kernels() and _crc32c_with() reach every
kernel this CPU can run, so that tests check each of them, not only the one picked.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t

__all__ = ["crc32c", "crc32c_combine_values", "crc32c_portable", "implementation"]

cdef extern from "crc32c_impl.h" nogil:
    ctypedef uint32_t (*kp_crc32c_fn)(uint32_t crc, const unsigned char* data, size_t length) noexcept
    ctypedef struct kp_crc32c_kernel:
        const char* name
        kp_crc32c_fn fn
    kp_crc32c_kernel kp_crc32c_kernels[]
    int kp_crc32c_kernel_count
    const char* kp_crc32c_init() noexcept
    uint32_t kp_crc32c(uint32_t crc, const unsigned char* data, size_t length) noexcept
    uint32_t kp_crc32c_portable(uint32_t crc, const unsigned char* data, size_t length) noexcept

ctypedef kp_crc32c_fn _kernel

cdef str _implementation = kp_crc32c_init().decode("ascii")
cdef dict _kernel_index = {kp_crc32c_kernels[i].name.decode("ascii"): i for i in range(kp_crc32c_kernel_count)}

# Below this the GIL round trip (~0.1 us) is a sizeable part of the work (32 KiB take ~2 us in hardware).
cdef Py_ssize_t _NOGIL_MIN_BYTES = 32768


cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* data, size_t length) noexcept nogil:
    return kp_crc32c(crc, data, length)


cdef uint32_t _start_value(object crc) except? 0xFFFFFFFF:
    if not isinstance(crc, int):
        raise TypeError(f"crc must be an int, not {type(crc).__name__}")
    if not 0 <= crc <= 0xFFFFFFFF:
        raise ValueError(f"crc must be a CRC-32C value in [0, 2**32), got {crc}")
    return <uint32_t>crc


cdef uint32_t _run(_kernel kernel, uint32_t start, const unsigned char* data, Py_ssize_t length) noexcept:
    cdef uint32_t result
    if length >= _NOGIL_MIN_BYTES:
        with nogil:
            result = kernel(start, data, <size_t>length)
        return result
    return kernel(start, data, <size_t>length)


cdef object _checksum(_kernel kernel, object data, object crc):
    cdef uint32_t start = _start_value(crc)
    cdef Py_buffer view
    cdef uint32_t result
    if PyBytes_Check(data):
        # Immutable and referenced by our caller: safe to read with the GIL released, with no buffer export.
        return _run(kernel, start, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    if not PyObject_CheckBuffer(data):
        raise TypeError(f"data must be a bytes-like object (bytes, bytearray, memoryview), not {type(data).__name__}")
    # The export pins a bytearray's storage (it cannot be resized) while we read it without the GIL.
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        result = _run(kernel, start, <const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return result


# CRC-32C of a concatenation from the CRCs of its parts: crc(A + B) = crc(A) * x^(8 len(B)) mod P, xor crc(B).
# Values are bit-reflected (bit 31 is x^0), as the checksum itself; the pre/post inversions of the two parts
# cancel out, so this works on finished CRC values.

cdef uint32_t CRC32C_POLY_REFLECTED = 0x82F63B78u


cdef inline uint32_t _gf2_mulmod(uint32_t a, uint32_t b) noexcept nogil:
    """a * b mod P for reflected 32-bit polynomials."""
    cdef uint32_t product = 0
    cdef uint32_t bit = 0x80000000u
    while bit:
        if a & bit:
            product ^= b
        bit >>= 1
        b = (b >> 1) ^ (CRC32C_POLY_REFLECTED if b & 1 else 0)
    return product


# _X8_POWERS[k] = x^(8 * 2^k) mod P: shifting by n bytes multiplies by the entries of n's set bits.
cdef uint32_t _X8_POWERS[64]


cdef void _init_x8_powers() noexcept:
    cdef uint32_t square = 0x40000000u  # x^1
    cdef int k
    for k in range(3):
        square = _gf2_mulmod(square, square)  # x^8
    for k in range(64):
        _X8_POWERS[k] = square
        square = _gf2_mulmod(square, square)


_init_x8_powers()


cdef uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, Py_ssize_t len_b) noexcept nogil:
    """The CRC-32C of A + B, given crc_a = CRC(A), crc_b = CRC(B) and B's length in bytes."""
    cdef uint32_t power = 0x80000000u  # x^0
    cdef uint64_t n = <uint64_t>len_b
    cdef int k = 0
    while n:
        if n & 1:
            power = _gf2_mulmod(power, _X8_POWERS[k])
        n >>= 1
        k += 1
    return _gf2_mulmod(crc_a, power) ^ crc_b


def crc32c_combine_values(crc_a, crc_b, len_b) -> int:
    """CRC-32C of A + B from crc_a = crc32c(A), crc_b = crc32c(B) and len(B), without reading the data."""
    cdef uint32_t a = _start_value(crc_a), b = _start_value(crc_b)
    if not isinstance(len_b, int) or len_b < 0:
        raise ValueError(f"len_b must be a byte count >= 0, got {len_b!r}")
    return crc32c_combine(a, b, len_b)


def crc32c(data, crc=0):
    """CRC-32C of a bytes-like object, continuing from crc (0 to start; pass a result back to go on)."""
    return _checksum(kp_crc32c, data, crc)


def crc32c_portable(data, crc=0):
    """crc32c() computed with the portable table kernel whatever the CPU, to check the hardware path against."""
    return _checksum(kp_crc32c_portable, data, crc)


def implementation():
    """The kernel crc32c() uses on this CPU: 'sse4.2+pclmul', 'sse4.2', 'armv8-crc' or 'portable'."""
    return _implementation


def _kernels():
    """Names of every kernel this CPU can run, fastest (the one crc32c() uses) first. For tests."""
    return tuple(_kernel_index)


def _crc32c_with(kernel, data, crc=0):
    """crc32c() computed by the named kernel (one of _kernels()). For tests."""
    try:
        index = _kernel_index[kernel]
    except KeyError:
        raise ValueError(f"no CRC-32C kernel {kernel!r} on this CPU; it has {_kernels()}") from None
    return _checksum(kp_crc32c_kernels[<int>index].fn, data, crc)
