/*
 * CRC-32C (Castagnoli) kernels of kafkaprod._native.crc32c, in C because they need CPU intrinsics.
 *
 * Included by crc32c.pyx only: it defines static tables and the dispatch pointer, so a second includer would get
 * a second, uninitialised copy. Other modules reach the kernel through crc32c.pxd's crc32c_update.
 *
 * The kernels, picked once by kp_crc32c_init() for the CPU we run on (the build uses no -march flags, so the
 * CPU-specific functions are compiled with per-function target attributes):
 *   - "sse4.2+pclmul" x86-64 crc32 instruction, streams combined by carry-less multiplication
 *   - "sse4.2"        x86-64 crc32 instruction, streams combined by shift tables (pre-2010 CPUs without PCLMUL)
 *   - "armv8-crc"     AArch64 crc32c* instructions (ARMv8 CRC extension; little-endian only), shift tables
 *   - "portable"      slicing-by-8 tables
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

/* Stream lengths of the hardware paths: 3 x 8 KiB chunks for long inputs, where the combine (about 10 cycles) is
 * lost in the noise; the table-combined path then takes 3 x 256-byte chunks, so that inputs from 768 bytes up run
 * on three streams. kp_shift_<n>[k][b] multiplies byte k of a register by x^(8 * stride) mod P. */
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
/* Hardware: the bodies are shared, with the instructions spelled per architecture.                          */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#include <wmmintrin.h>
#define KP_CRC32C_HW 1
#define KP_CRC32C_HW_NAME "sse4.2"
#define KP_HW_TARGET __attribute__((target("sse4.2")))
#define KP_CLMUL_TARGET __attribute__((target("sse4.2,pclmul")))
/* The register lives in a 64-bit variable: crc32q zero-extends its result, and truncating to 32 bits in the loop
 * would put a zero-extending mov on the dependency chain (4 cycles per word instead of 3). */
typedef uint64_t kp_hw_reg;
#define KP_HW_U8(r, v) ((uint64_t)_mm_crc32_u8((uint32_t)(r), (v)))
#define KP_HW_U16(r, v) ((uint64_t)_mm_crc32_u16((uint32_t)(r), (v)))
#define KP_HW_U32(r, v) ((uint64_t)_mm_crc32_u32((uint32_t)(r), (v)))
#define KP_HW_U64(r, v) _mm_crc32_u64((r), (v))

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
#define KP_HW_U8(r, v) __crc32cb((r), (v))
#define KP_HW_U16(r, v) __crc32ch((r), (v))
#define KP_HW_U32(r, v) __crc32cw((r), (v))
#define KP_HW_U64(r, v) __crc32cd((r), (v))
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
/* Unaligned-safe loads; the hardware paths are little-endian only, so no byte swaps. */
static inline uint64_t kp_load64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t kp_load32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t kp_load16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Brings p to an 8-byte boundary (when there is a word to read) so that no word straddles a cache line. */
KP_HW_TARGET static inline kp_hw_reg kp_hw_align(kp_hw_reg r, const unsigned char **pp, size_t *np)
{
    const unsigned char *p = *pp;
    size_t n = *np;
    if (n >= 8 && ((uintptr_t)p & 7u) != 0) {
        if ((uintptr_t)p & 1u) { r = KP_HW_U8(r, *p); p += 1; n -= 1; }
        if ((uintptr_t)p & 2u) { r = KP_HW_U16(r, kp_load16(p)); p += 2; n -= 2; }
        if ((uintptr_t)p & 4u) { r = KP_HW_U32(r, kp_load32(p)); p += 4; n -= 4; }
    }
    *pp = p;
    *np = n;
    return r;
}

/* One stream over the rest: words, then at most one 4-, 2- and 1-byte step. */
KP_HW_TARGET static inline kp_hw_reg kp_hw_one_stream(kp_hw_reg r, const unsigned char *p, size_t n)
{
    while (n >= 8) {
        r = KP_HW_U64(r, kp_load64(p));
        p += 8;
        n -= 8;
    }
    if (n & 4u) { r = KP_HW_U32(r, kp_load32(p)); p += 4; }
    if (n & 2u) { r = KP_HW_U16(r, kp_load16(p)); p += 2; }
    if (n & 1u) { r = KP_HW_U8(r, *p); }
    return r;
}

/* Three streams over p[0:stride], p[stride:2*stride] and p[2*stride:3*stride] (stride a multiple of 8): r0
 * continues the running register, r1 and r2 start from 0, all three crc32 instructions in flight at once. */
#define KP_HW_THREE_STREAMS(r0, r1, r2, p, stride)                                                                \
    do {                                                                                                          \
        const unsigned char *kp_s = (p), *kp_end = (p) + (stride);                                                \
        (r1) = 0;                                                                                                 \
        (r2) = 0;                                                                                                 \
        do {                                                                                                      \
            (r0) = KP_HW_U64((r0), kp_load64(kp_s));                                                              \
            (r1) = KP_HW_U64((r1), kp_load64(kp_s + (stride)));                                                   \
            (r2) = KP_HW_U64((r2), kp_load64(kp_s + 2 * (stride)));                                               \
            kp_s += 8;                                                                                            \
        } while (kp_s != kp_end);                                                                                 \
    } while (0)

/* Fixed strides, combined with the shift tables: any CPU with the CRC instructions. */
KP_HW_TARGET static inline kp_hw_reg kp_hw_three_tables(kp_hw_reg r0, const unsigned char *p, size_t stride,
                                                       const uint32_t shift[4][256])
{
    kp_hw_reg r1, r2;
    KP_HW_THREE_STREAMS(r0, r1, r2, p, stride);
    r0 = kp_shift(shift, (uint32_t)r0) ^ r1;
    return kp_shift(shift, (uint32_t)r0) ^ r2;
}

KP_HW_TARGET static uint32_t kp_crc32c_hw_tables(uint32_t crc, const unsigned char *p, size_t n)
{
    kp_hw_reg r = kp_hw_align((uint32_t)~crc, &p, &n);
    while (n >= 3 * KP_CRC32C_LONG) {
        r = kp_hw_three_tables(r, p, KP_CRC32C_LONG, (const uint32_t(*)[256])kp_shift_long);
        p += 3 * KP_CRC32C_LONG;
        n -= 3 * KP_CRC32C_LONG;
    }
    while (n >= 3 * KP_CRC32C_SHORT) {
        r = kp_hw_three_tables(r, p, KP_CRC32C_SHORT, (const uint32_t(*)[256])kp_shift_short);
        p += 3 * KP_CRC32C_SHORT;
        n -= 3 * KP_CRC32C_SHORT;
    }
    return ~(uint32_t)kp_hw_one_stream(r, p, n);
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

#if KP_CRC32C_HW && defined(__x86_64__)
/* x86-64 with PCLMULQDQ: the shift becomes a carry-less multiply, so any stride can be combined, not just the two
 * with tables, and the last partial block runs on three streams too (the table path leaves up to 767 bytes to a
 * single stream). Shifting register r over s bytes: clmul of two reflected 32-bit values yields their product
 * times x (bit k of the 64-bit result is the coefficient of x^(62-k), read by crc32q as x^(63-k)), and
 * crc32q(0, d) = d * x^32 mod P, so
 *     crc32q(0, clmul(r, x^(8s-33) mod P)) = r * x^(8s) mod P.
 * Both shifts of a combine fold into one reduction: r0 * x^(16s) ^ r1 * x^(8s) is linear in the product. */
#define KP_CLMUL_MAX_WORDS (2 * (KP_CRC32C_LONG / 8))
static uint32_t kp_clmul_k[KP_CLMUL_MAX_WORDS + 1];   /* kp_clmul_k[j] = x^(64j - 33) mod P, j >= 1 */

/* Inputs below this stay on one stream: the combine (~10 cycles) would eat what three streams save. */
#define KP_CLMUL_THREE_MIN 128u

static void kp_clmul_init(void)
{
    uint32_t x64 = kp_gf2_xpow8n(8);
    size_t j;
    kp_clmul_k[1] = 0x00000001u;   /* x^31: bit 0 in the reflected representation */
    for (j = 2; j <= KP_CLMUL_MAX_WORDS; j++)
        kp_clmul_k[j] = kp_gf2_mulmod(kp_clmul_k[j - 1], x64);
}

KP_CLMUL_TARGET static inline kp_hw_reg kp_hw_three_clmul(kp_hw_reg r0, const unsigned char *p, size_t stride)
{
    kp_hw_reg r1, r2;
    __m128i a, b;
    KP_HW_THREE_STREAMS(r0, r1, r2, p, stride);
    a = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)r0),
                             _mm_cvtsi32_si128((int)kp_clmul_k[2 * (stride / 8)]), 0x00);
    b = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)r1), _mm_cvtsi32_si128((int)kp_clmul_k[stride / 8]),
                             0x00);
    return _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(_mm_xor_si128(a, b))) ^ r2;
}

KP_CLMUL_TARGET static uint32_t kp_crc32c_hw_clmul(uint32_t crc, const unsigned char *p, size_t n)
{
    kp_hw_reg r = kp_hw_align((uint32_t)~crc, &p, &n);
    size_t stride;
    while (n >= 3 * KP_CRC32C_LONG) {
        r = kp_hw_three_clmul(r, p, KP_CRC32C_LONG);
        p += 3 * KP_CRC32C_LONG;
        n -= 3 * KP_CRC32C_LONG;
    }
    if (n >= KP_CLMUL_THREE_MIN) {
        stride = (n / 24) * 8;
        r = kp_hw_three_clmul(r, p, stride);
        p += 3 * stride;
        n -= 3 * stride;
    }
    return ~(uint32_t)kp_hw_one_stream(r, p, n);
}

static int kp_crc32c_cpu_has_clmul(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
}
#endif

/* ---------------------------------------------------------------------------------------------------------- */
/* Dispatch.                                                                                                  */

/* The kernels this CPU can run, fastest first; kernel 0 is the one kp_crc32c uses. Tests run them all. */
typedef struct {
    const char *name;
    kp_crc32c_fn fn;
} kp_crc32c_kernel;

static kp_crc32c_kernel kp_crc32c_kernels[3];
static int kp_crc32c_kernel_count;
static kp_crc32c_fn kp_crc32c_active = kp_crc32c_portable;

static void kp_crc32c_add_kernel(const char *name, kp_crc32c_fn fn)
{
    kp_crc32c_kernels[kp_crc32c_kernel_count].name = name;
    kp_crc32c_kernels[kp_crc32c_kernel_count].fn = fn;
    kp_crc32c_kernel_count++;
}

/* Fills the tables and picks the fastest kernel this CPU runs; returns its name. Call once, before any use. */
static const char *kp_crc32c_init(void)
{
    kp_sb8_init();
    kp_shift_table_init(kp_shift_long, KP_CRC32C_LONG);
    kp_shift_table_init(kp_shift_short, KP_CRC32C_SHORT);
    kp_crc32c_kernel_count = 0;
#if KP_CRC32C_HW && defined(__x86_64__)
    kp_clmul_init();
    if (kp_crc32c_cpu_has_clmul())
        kp_crc32c_add_kernel(KP_CRC32C_HW_NAME "+pclmul", kp_crc32c_hw_clmul);
#endif
#if KP_CRC32C_HW
    if (kp_crc32c_cpu_has_hw())
        kp_crc32c_add_kernel(KP_CRC32C_HW_NAME, kp_crc32c_hw_tables);
#endif
    kp_crc32c_add_kernel("portable", kp_crc32c_portable);
    kp_crc32c_active = kp_crc32c_kernels[0].fn;
    return kp_crc32c_kernels[0].name;
}

static inline uint32_t kp_crc32c(uint32_t crc, const unsigned char *data, size_t length)
{
    return kp_crc32c_active(crc, data, length);
}

#endif /* KAFKAPROD_CRC32C_IMPL_H */
