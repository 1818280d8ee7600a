/*
 * CRC-32C (Castagnoli) kernels of kafkaprod._native.crc32c, in C because they need CPU intrinsics.
 *
 * Included by crc32c.pyx only: it defines static tables and the dispatch pointer, so a second includer would get
 * a second, uninitialised copy. Other modules reach the kernel through crc32c.pxd's crc32c_update.
 *
 * Three implementations, picked once by kp_crc32c_init() for the CPU we run on (the build uses no -march flags,
 * so the CPU-specific functions are compiled with per-function target attributes):
 *   - "sse4.2"    x86-64 crc32 instruction (SSE4.2)
 *   - "armv8-crc" AArch64 crc32c* instructions (ARMv8 CRC extension; little-endian only)
 *   - "portable"  slicing-by-8 tables
 *
 * Conventions. All kernels take and return the *final* CRC (bits inverted), as Java's Crc32C: start with 0 and
 * feed a result back in to continue over more data. Inside, they run on the raw register r = ~crc.
 *
 * The math behind combining streams. CRC-32C is "reflected": a 32-bit register value v stands for the
 * polynomial sum(v_i * x^(31-i)) over GF(2), so bit 31 is x^0 and bit 0 is x^31, and P is the Castagnoli
 * polynomial whose low 32 coefficients, reflected, are 0x82F63B78. Feeding bytes m into register r gives
 *     R(r, m) = (r * x^(8|m|) + m(x) * x^32) mod P,
 * which is linear over GF(2) in (r, m). Hence, for m = A || B with |B| = n bytes,
 *     R(r, A || B) = R(r, A) * x^(8n) mod P  XOR  R(0, B),
 * so independent streams over A and B (the second started from 0) can run at the same time and be combined
 * with one multiplication by the constant x^(8n) mod P. Multiplying a register c by a fixed constant K is linear
 * in c's four bytes, so it is four lookups in tables T_k[b] = (b << 8k) * K mod P (kp_shift_table_init).
 * That lets the hardware paths keep three crc32 instructions in flight (latency 3, throughput 1) on inputs
 * long enough to split in three, instead of one every three cycles.
 */
#ifndef KAFKAPROD_CRC32C_IMPL_H
#define KAFKAPROD_CRC32C_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KP_CRC32C_POLY 0x82F63B78u

typedef uint32_t (*kp_crc32c_fn)(uint32_t crc, const unsigned char *data, size_t length);

/* ---------------------------------------------------------------------------------------------------------- */
/* GF(2) arithmetic modulo P in the reflected representation.                                                 */

/* a * b mod P. Only used to build tables at import time, so a bit loop is fast enough. */
static uint32_t kp_gf2_mulmod(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    uint32_t bit;
    for (bit = 0x80000000u; bit != 0; bit >>= 1) {   /* x^0, x^1, ... x^31 of a */
        if (a & bit)
            product ^= b;
        b = (b >> 1) ^ ((b & 1u) ? KP_CRC32C_POLY : 0u);   /* b *= x: x^31 overflows into P's low part */
    }
    return product;
}

/* x^(8n) mod P: the factor that moves a register over n zero bytes. */
static uint32_t kp_gf2_xpow8n(uint64_t n)
{
    uint32_t result = 0x80000000u;   /* x^0 */
    uint32_t square = 0x00800000u;   /* x^8, then x^16, x^32, ... */
    while (n != 0) {
        if (n & 1u)
            result = kp_gf2_mulmod(result, square);
        square = kp_gf2_mulmod(square, square);
        n >>= 1;
    }
    return result;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Tables, filled once by kp_crc32c_init().                                                                   */

/* Slicing-by-8: kp_sb8[k][b] is the register after byte b followed by k zero bytes, from register 0. */
static uint32_t kp_sb8[8][256];

/* Stream lengths of the hardware paths: 3 x 8 KiB chunks for long inputs, 3 x 256 bytes for the rest. The long
 * stride makes the combine (about 10 cycles) negligible; the short one keeps inputs from 768 bytes up on three
 * streams. kp_shift_<n>[k][b] multiplies byte k of a register by x^(8 * stride) mod P. */
#define KP_CRC32C_LONG 8192u
#define KP_CRC32C_SHORT 256u
static uint32_t kp_shift_long[4][256];
static uint32_t kp_shift_short[4][256];

static void kp_shift_table_init(uint32_t table[4][256], uint64_t nbytes)
{
    uint32_t factor = kp_gf2_xpow8n(nbytes);
    int k, b;
    for (k = 0; k < 4; k++)
        for (b = 0; b < 256; b++)
            table[k][b] = kp_gf2_mulmod((uint32_t)b << (8 * k), factor);
}

static inline uint32_t kp_shift(const uint32_t table[4][256], uint32_t r)
{
    return table[0][r & 0xFF] ^ table[1][(r >> 8) & 0xFF] ^ table[2][(r >> 16) & 0xFF] ^ table[3][r >> 24];
}

static void kp_sb8_init(void)
{
    int k, b, i;
    for (b = 0; b < 256; b++) {
        uint32_t r = (uint32_t)b;
        for (i = 0; i < 8; i++)
            r = (r >> 1) ^ ((r & 1u) ? KP_CRC32C_POLY : 0u);
        kp_sb8[0][b] = r;
    }
    for (k = 1; k < 8; k++)
        for (b = 0; b < 256; b++)
            kp_sb8[k][b] = (kp_sb8[k - 1][b] >> 8) ^ kp_sb8[0][kp_sb8[k - 1][b] & 0xFF];
}

/* Byte-order-independent loads: the CRC consumes the first byte first, which is the low byte of a
 * little-endian word. Compilers turn these into single loads on little-endian targets. */
static inline uint32_t kp_load32le(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Portable: slicing-by-8.                                                                                    */

static uint32_t kp_crc32c_portable(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t r = ~crc;
    while (n != 0 && ((uintptr_t)p & 7u) != 0) {
        r = (r >> 8) ^ kp_sb8[0][(r ^ *p++) & 0xFF];
        n--;
    }
    while (n >= 8) {
        uint32_t lo = r ^ kp_load32le(p);
        uint32_t hi = kp_load32le(p + 4);
        r = kp_sb8[7][lo & 0xFF] ^ kp_sb8[6][(lo >> 8) & 0xFF] ^ kp_sb8[5][(lo >> 16) & 0xFF]
            ^ kp_sb8[4][lo >> 24] ^ kp_sb8[3][hi & 0xFF] ^ kp_sb8[2][(hi >> 8) & 0xFF]
            ^ kp_sb8[1][(hi >> 16) & 0xFF] ^ kp_sb8[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n != 0) {
        r = (r >> 8) ^ kp_sb8[0][(r ^ *p++) & 0xFF];
        n--;
    }
    return ~r;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Hardware: one body, with the instruction spelled per architecture.                                         */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define KP_CRC32C_HW 1
#define KP_CRC32C_HW_NAME "sse4.2"
#define KP_HW_TARGET __attribute__((target("sse4.2")))
/* The register lives in a 64-bit variable: crc32q zero-extends its result, and truncating to 32 bits in the loop
 * would put a zero-extending mov on the dependency chain (4 cycles per word instead of 3). */
typedef uint64_t kp_hw_reg;
#define KP_HW_U8(r, byte) ((uint64_t)_mm_crc32_u8((uint32_t)(r), (byte)))
#define KP_HW_U64(r, word) _mm_crc32_u64((r), (word))

#elif defined(__aarch64__) && defined(__AARCH64EL__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_acle.h>
#define KP_CRC32C_HW 1
#define KP_CRC32C_HW_NAME "armv8-crc"
#if defined(__ARM_FEATURE_CRC32)
#define KP_HW_TARGET   /* the baseline already has the extension (e.g. Apple arm64) */
#elif defined(__clang__)
#define KP_HW_TARGET __attribute__((target("crc")))
#else
#define KP_HW_TARGET __attribute__((target("+crc")))
#endif
typedef uint32_t kp_hw_reg;
#define KP_HW_U8(r, byte) __crc32cb((r), (byte))
#define KP_HW_U64(r, word) __crc32cd((r), (word))
#if !defined(__ARM_FEATURE_CRC32) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1UL << 7)   /* the kernel's bit; older libcs lack the name */
#endif
#endif

#else
#define KP_CRC32C_HW 0
#endif

#if KP_CRC32C_HW
static inline uint64_t kp_load64le(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);   /* the hardware paths are little-endian only, so no swap */
    return v;
}

/* Runs the register over 3 * stride bytes as three streams and combines them; stride is a multiple of 8. */
KP_HW_TARGET static inline kp_hw_reg kp_hw_three_streams(kp_hw_reg r0, const unsigned char *p, size_t stride,
                                                        const uint32_t shift[4][256])
{
    kp_hw_reg r1 = 0, r2 = 0;
    const unsigned char *end = p + stride;
    do {
        r0 = KP_HW_U64(r0, kp_load64le(p));
        r1 = KP_HW_U64(r1, kp_load64le(p + stride));
        r2 = KP_HW_U64(r2, kp_load64le(p + 2 * stride));
        p += 8;
    } while (p != end);
    r0 = kp_shift(shift, (uint32_t)r0) ^ r1;
    return kp_shift(shift, (uint32_t)r0) ^ r2;
}

KP_HW_TARGET static uint32_t kp_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    kp_hw_reg r = (uint32_t)~crc;
    /* Aligned words never straddle cache lines. */
    while (n != 0 && ((uintptr_t)p & 7u) != 0) {
        r = KP_HW_U8(r, *p++);
        n--;
    }
    while (n >= 3 * KP_CRC32C_LONG) {
        r = kp_hw_three_streams(r, p, KP_CRC32C_LONG, (const uint32_t(*)[256])kp_shift_long);
        p += 3 * KP_CRC32C_LONG;
        n -= 3 * KP_CRC32C_LONG;
    }
    while (n >= 3 * KP_CRC32C_SHORT) {
        r = kp_hw_three_streams(r, p, KP_CRC32C_SHORT, (const uint32_t(*)[256])kp_shift_short);
        p += 3 * KP_CRC32C_SHORT;
        n -= 3 * KP_CRC32C_SHORT;
    }
    while (n >= 8) {
        r = KP_HW_U64(r, kp_load64le(p));
        p += 8;
        n -= 8;
    }
    while (n != 0) {
        r = KP_HW_U8(r, *p++);
        n--;
    }
    return ~(uint32_t)r;
}

static int kp_crc32c_cpu_has_hw(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
#elif defined(__ARM_FEATURE_CRC32)
    return 1;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#else
    return 0;   /* no portable way to ask; stay on tables */
#endif
}
#endif /* KP_CRC32C_HW */

/* ---------------------------------------------------------------------------------------------------------- */
/* Dispatch.                                                                                                  */

static kp_crc32c_fn kp_crc32c_active = kp_crc32c_portable;
static const char *kp_crc32c_active_name = "portable";

/* Fills the tables and picks the fastest kernel this CPU runs; returns its name. Call once, before any use. */
static const char *kp_crc32c_init(void)
{
    kp_sb8_init();
    kp_shift_table_init(kp_shift_long, KP_CRC32C_LONG);
    kp_shift_table_init(kp_shift_short, KP_CRC32C_SHORT);
#if KP_CRC32C_HW
    if (kp_crc32c_cpu_has_hw()) {
        kp_crc32c_active = kp_crc32c_hw;
        kp_crc32c_active_name = KP_CRC32C_HW_NAME;
    }
#endif
    return kp_crc32c_active_name;
}

static inline uint32_t kp_crc32c(uint32_t crc, const unsigned char *data, size_t length)
{
    return kp_crc32c_active(crc, data, length);
}

#endif /* KAFKAPROD_CRC32C_IMPL_H */
