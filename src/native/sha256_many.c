/* SHA-256 of many buffers at once: sixteen of them side by side in the
 * lanes of AVX-512 registers, where the CPU has AVX-512.
 *
 * Why: hashing is the biggest share of a verified read. A 1 GiB file read
 * from the disk cache took 0.7 core-seconds of SHA-256 (OpenSSL's, with
 * the SHA-NI instructions: 1.5 GB/s on one core here) out of about 1.9 for
 * the whole read on two cores. SHA-256 cannot be sped up within one
 * buffer (each block depends on the one before), but the chunks of a read
 * stream are independent, and one AVX-512 instruction does the same step
 * for sixteen of them: 3.1 GB/s on one core of this machine.
 *
 * The catch is that a lane is only useful while it has bytes: sixteen
 * chunks of different lengths side by side finish at different times. So a
 * lane whose buffer is done takes the next one waiting (as Intel's
 * multi-buffer managers do), and when fewer than MB_LANES_MIN lanes would
 * still be busy and no buffer waits, the ones left are finished one by one
 * with OpenSSL, from the state their lane reached. Fewer than MB_LANES_MIN
 * buffers in all are hashed with OpenSSL only.
 *
 * Checked against OpenSSL for lengths around every block boundary
 * (test/native/sha256-many.test.ts). */
#define _GNU_SOURCE
/* SHA256_Init/Update/Final with a state set by hand: the one way OpenSSL
 * continues a hash from a midstate, deprecated in 3.0 but exported. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "common.h"

#include <immintrin.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16
/* Below this many busy lanes, sixteen-wide rounds cost more per byte than SHA-NI on one buffer. */
#define MB_LANES_MIN 6

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
static const uint32_t H256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

static void sha256_one(const unsigned char *data, size_t length, unsigned char digest[32]) {
  unsigned int digest_length = 0;
  /* Should OpenSSL fail, a digest of zeros: it matches no chunk, so nothing unchecked is served. */
  if (EVP_Digest(data, length, digest, &digest_length, EVP_sha256(), NULL) != 1 || digest_length != 32) memset(digest, 0, 32);
}

/* Sixteen lanes' hash state, word i of lane l at state[i][l]. */
typedef uint32_t lane_state_t[8][LANES];

/* `blocks` 64-byte blocks of every lane: lane l's block b at from[l] + step[l] * b (a step of 0 keeps an idle lane on one block). */
__attribute__((target("avx512f,avx512bw"))) static void rounds16(lane_state_t state, const unsigned char *const from[LANES],
                                                                   const size_t step[LANES], size_t blocks) {
  const __m512i byte_swap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
  __m512i h[8];
  for (int i = 0; i < 8; i++) h[i] = _mm512_loadu_si512(state[i]);
  for (size_t b = 0; b < blocks; b++) {
    /* Row l: lane l's sixteen message words; transposed so that w[j] holds word j of every lane. */
    __m512i r[16], t[16], w[16];
    for (int l = 0; l < LANES; l++) r[l] = _mm512_shuffle_epi8(_mm512_loadu_si512(from[l] + step[l] * b), byte_swap);
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
      r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
      r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
      r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
      t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
      t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
      t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
      w[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
      w[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
      w[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
      w[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
    __m512i a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
#pragma GCC unroll 64
    for (int round = 0; round < 64; round++) {
      __m512i word;
      if (round < 16) {
        word = w[round];
      } else {
        __m512i w15 = w[(round - 15) & 15], w2 = w[(round - 2) & 15];
        /* 0x96: a ^ b ^ c. */
        __m512i s0 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(w15, 7), _mm512_ror_epi32(w15, 18), _mm512_srli_epi32(w15, 3), 0x96);
        __m512i s1 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(w2, 17), _mm512_ror_epi32(w2, 19), _mm512_srli_epi32(w2, 10), 0x96);
        word = _mm512_add_epi32(_mm512_add_epi32(w[round & 15], s0), _mm512_add_epi32(w[(round - 7) & 15], s1));
        w[round & 15] = word;
      }
      __m512i big_s1 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(e, 6), _mm512_ror_epi32(e, 11), _mm512_ror_epi32(e, 25), 0x96);
      /* 0xCA: e ? f : g (Ch); 0xE8: the majority of a, b, c (Maj). */
      __m512i choose = _mm512_ternarylogic_epi32(e, f, g, 0xCA);
      __m512i t1 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(hh, big_s1), _mm512_add_epi32(choose, _mm512_set1_epi32((int)K256[round]))), word);
      __m512i big_s0 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(a, 2), _mm512_ror_epi32(a, 13), _mm512_ror_epi32(a, 22), 0x96);
      __m512i majority = _mm512_ternarylogic_epi32(a, bb, c, 0xE8);
      hh = g;
      g = f;
      f = e;
      e = _mm512_add_epi32(d, t1);
      d = c;
      c = bb;
      bb = a;
      a = _mm512_add_epi32(t1, _mm512_add_epi32(big_s0, majority));
    }
    h[0] = _mm512_add_epi32(h[0], a);
    h[1] = _mm512_add_epi32(h[1], bb);
    h[2] = _mm512_add_epi32(h[2], c);
    h[3] = _mm512_add_epi32(h[3], d);
    h[4] = _mm512_add_epi32(h[4], e);
    h[5] = _mm512_add_epi32(h[5], f);
    h[6] = _mm512_add_epi32(h[6], g);
    h[7] = _mm512_add_epi32(h[7], hh);
  }
  for (int i = 0; i < 8; i++) _mm512_storeu_si512(state[i], h[i]);
}

typedef struct {
  /* Index of the buffer in the lane, or -1. */
  long buffer;
  const unsigned char *at;
  /* Blocks left in the current part: the buffer's whole blocks, then its padded tail. */
  size_t blocks_left;
  int in_tail;
  /* The last partial block, 0x80, zeros and the length in bits: one or two blocks. */
  unsigned char tail[128];
} lane_t;

static size_t tail_blocks(size_t length) {
  return length % 64 < 56 ? 1 : 2;
}

static void start_tail(lane_t *lane, const unsigned char *data, size_t length) {
  size_t rest = length % 64, blocks = tail_blocks(length);
  memset(lane->tail, 0, sizeof lane->tail);
  memcpy(lane->tail, data + length - rest, rest);
  lane->tail[rest] = 0x80;
  uint64_t bits = (uint64_t)length * 8;
  for (int i = 0; i < 8; i++) lane->tail[blocks * 64 - 1 - i] = (unsigned char)(bits >> (8 * i));
  lane->at = lane->tail;
  lane->blocks_left = blocks;
  lane->in_tail = 1;
}

/* Finishes a lane still in its buffer's whole blocks with OpenSSL, from the state the lane reached. */
static void finish_alone(lane_state_t state, int l, const lane_t *lane, const unsigned char *data, size_t length, unsigned char digest[32]) {
  size_t done = (size_t)(lane->at - data);
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  for (int i = 0; i < 8; i++) ctx.h[i] = state[i][l];
  ctx.Nl = (SHA_LONG)((uint64_t)done << 3);
  ctx.Nh = (SHA_LONG)((uint64_t)done >> 29);
  SHA256_Update(&ctx, data + done, length - done);
  SHA256_Final(digest, &ctx);
}

__attribute__((target("avx512f,avx512bw"))) static void sha256_lanes(const unsigned char *const *data, const size_t *length, size_t count,
                                                                       unsigned char (*digest)[32]) {
  static const unsigned char idle_block[64];
  lane_state_t state;
  lane_t lanes[LANES];
  const unsigned char *from[LANES];
  size_t step[LANES];
  size_t next = 0;
  for (int l = 0; l < LANES; l++) lanes[l].buffer = -1;
  for (;;) {
    int busy = 0;
    for (int l = 0; l < LANES; l++) {
      lane_t *lane = &lanes[l];
      if (lane->buffer < 0 && next < count) {
        lane->buffer = (long)next;
        lane->at = data[next];
        lane->in_tail = 0;
        lane->blocks_left = length[next] / 64;
        for (int i = 0; i < 8; i++) state[i][l] = H256[i];
        if (lane->blocks_left == 0) start_tail(lane, data[next], length[next]);
        next += 1;
      }
      if (lane->buffer >= 0) busy += 1;
    }
    if (busy == 0) return;
    if (next == count && busy < MB_LANES_MIN) {
      /* The last few: one by one, where they are in their whole blocks; a tail is one or two blocks more here. */
      for (int l = 0; l < LANES; l++) {
        lane_t *lane = &lanes[l];
        if (lane->buffer < 0 || lane->in_tail) continue;
        finish_alone(state, l, lane, data[lane->buffer], length[lane->buffer], digest[lane->buffer]);
        lane->buffer = -1;
      }
    }
    size_t blocks = SIZE_MAX;
    for (int l = 0; l < LANES; l++) {
      lane_t *lane = &lanes[l];
      int active = lane->buffer >= 0;
      from[l] = active ? lane->at : idle_block;
      step[l] = active ? 64 : 0;
      if (active && lane->blocks_left < blocks) blocks = lane->blocks_left;
    }
    if (blocks == SIZE_MAX) continue;
    rounds16(state, from, step, blocks);
    for (int l = 0; l < LANES; l++) {
      lane_t *lane = &lanes[l];
      if (lane->buffer < 0) continue;
      lane->at += 64 * blocks;
      lane->blocks_left -= blocks;
      if (lane->blocks_left > 0) continue;
      if (!lane->in_tail) {
        start_tail(lane, data[lane->buffer], length[lane->buffer]);
        continue;
      }
      unsigned char *out = digest[lane->buffer];
      for (int i = 0; i < 8; i++) {
        uint32_t v = state[i][l];
        out[4 * i] = (unsigned char)(v >> 24);
        out[4 * i + 1] = (unsigned char)(v >> 16);
        out[4 * i + 2] = (unsigned char)(v >> 8);
        out[4 * i + 3] = (unsigned char)v;
      }
      lane->buffer = -1;
    }
  }
}

int tessera_sha256_lanes(void) {
  static int supported = -1;
  if (supported < 0) {
    __builtin_cpu_init();
    supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && getenv("TESSERA_NO_SHA256_LANES") == NULL;
  }
  return supported;
}

void tessera_sha256_many(const unsigned char *const *data, const size_t *length, size_t count, unsigned char (*digest)[32]) {
  if (count < MB_LANES_MIN || !tessera_sha256_lanes()) {
    for (size_t i = 0; i < count; i++) sha256_one(data[i], length[i], digest[i]);
    return;
  }
  sha256_lanes(data, length, count, digest);
}

/* sha256Many(buffers) -> Buffer of 32 bytes per buffer: for the tests, which check the lanes against OpenSSL. */
static napi_value js_sha256_many(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tessera_get_args(env, info, 1, argv) == NULL) return NULL;
  uint32_t count = 0;
  NAPI_CALL(env, napi_get_array_length(env, argv[0], &count));
  if (count > 1u << 20) {
    napi_throw_range_error(env, NULL, "sha256Many: at most 2^20 buffers");
    return NULL;
  }
  const unsigned char **data = calloc(count + 1, sizeof *data);
  size_t *length = calloc(count + 1, sizeof *length);
  unsigned char *out = NULL;
  napi_value result = NULL;
  if (data == NULL || length == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    goto done;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    void *bytes = NULL;
    if (napi_get_element(env, argv[0], i, &element) != napi_ok || napi_get_buffer_info(env, element, &bytes, &length[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "sha256Many: an array of Buffers");
      goto done;
    }
    data[i] = bytes;
  }
  if (napi_create_buffer(env, (size_t)count * 32, (void **)&out, &result) != napi_ok) goto done;
  tessera_sha256_many(data, length, count, (unsigned char (*)[32])out);
done:
  free(data);
  free(length);
  return result;
}

void tessera_register_sha256_many(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sha256Many", NULL, js_sha256_many, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
