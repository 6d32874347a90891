// CPU kernels: the selective scan (forward and backward), then the causal depthwise conv1d and
// RMSNorm. The scan's maths and the readable oracle live in ../selective_scan.py
// (selective_scan_ref), the others' in ../conv.py and ../norm.py; tests/ops compares this file
// against them.
//
// Glossary: Bsz batch, E channels, L length, N state size, G groups of B/C, Eg = E / G channels
// per group, W lanes (channels scanned together in one SIMD vector), T time steps per tile.
//
//   h_t = exp(d_t * A) * h_{t-1} + d_t * u_t * B_t      d = softplus(delta + bias) or delta + bias
//   y_t = <h_t, C_t> + D * u_t                            out = y * silu(z)
//
// Layout: one work item scans W channels of one (batch, group) over the whole sequence. The W
// channels sit in the lanes of a GCC vector, so the recurrence stays sequential in t while each
// instruction serves W channels; B_t and C_t are shared by the lanes and read as broadcast
// scalars from an (L, N) copy. u, delta, z, dout are transposed tile by tile into (T, W) buffers,
// an O(E*L) cost next to the O(E*L*N) exps.
//
// Numerics: state math in fp32. exp(d * A) = exp2(d * (A * log2 e)) with a branch-free exp2 that
// saturates to 0 / inf and propagates NaN (no -ffast-math). Denormals are flushed inside the
// kernel: decaying states would otherwise hit ~100-cycle microcode assists on x86.
//
// Direction: with `reverse` the recurrence visits t = L-1 .. 0 (the result equals flipping every
// (.., L) input, scanning and flipping the output back, without the flipped copies). Tiles are
// then visited last to first and each tile back to front; the per-step maths is unchanged.
//
// Memory: the backward gets only the inputs. It recomputes the states: a first pass keeps the
// state at each tile boundary (L / T * N floats per channel), then tiles are replayed in reverse,
// each one recomputed into (T, N) buffers of states and decays that stay in L2.

// Narrow includes instead of <torch/extension.h>: the first build takes ~2.5x less time.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define VM_HAS_MXCSR 1
#endif
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define VM_HAS_SHUFFLEVECTOR 1  // __builtin_shufflevector; older GCCs take the scalar paths
#endif

namespace {

constexpr int W = 16;  // one AVX-512 register, two AVX2 ones; reduce_lanes and clamp_* rely on it
constexpr int T = 64;  // tile: (T, N) floats of states and decays per lane stay in L2
constexpr float LOG2E = 1.4426950408889634f;

typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef uint32_t vu __attribute__((vector_size(W * sizeof(uint32_t))));
typedef uint16_t vh __attribute__((vector_size(W * sizeof(uint16_t))));

inline vf splat(float s) { return vf{} + s; }

// max(lo, x) and min(hi, x) that return x when x is NaN. The ternaries are exact but GCC keeps
// them as compare + blend (it may not assume no NaNs); AVX-512's max/min with the constant
// first have the same NaN rule in one instruction.
inline vf clamp_lo(vf x, float lo) {
#ifdef __AVX512F__
  return (vf)_mm512_max_ps((__m512)splat(lo), (__m512)x);
#else
  return x < lo ? splat(lo) : x;
#endif
}
inline vf clamp_hi(vf x, float hi) {
#ifdef __AVX512F__
  return (vf)_mm512_min_ps((__m512)splat(hi), (__m512)x);
#else
  return x > hi ? splat(hi) : x;
#endif
}

// 2^x, rel. error < 2e-7. Clamping x to [-126, 128] makes the edges exact without selects:
// x < -126 gives 0 (true value < 1.2e-38), x >= 128 gives inf, NaN passes through p.
#ifdef __AVX512F__
// AVX-512: k = round(x) in one instruction (vrndscaleps) and p * 2^k in one (vscalefps, exact,
// no intermediate overflow), 11 operations against 15 below; the scan's decays are most of its
// work. The polynomial is the one below with every coefficient halved (exactly), so p is half
// of the one below, bit for bit, and p * 2^k equals its p * 2^(k-1): the same results except
// below 2^-126, where this gives a denormal (0 where denormals are flushed, as in the scan).
inline vf vexp2(vf x) {
  x = clamp_hi(clamp_lo(x, -126.f), 128.f);  // NaN flows on
  const __m512 k = _mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = x - (vf)k;  // exact, |f| <= 0.5
  vf p = f * (3.070672376639000e-4f * 0.5f) + 2.679774880533148e-3f * 0.5f;
  p = p * f + 1.923687471534928e-2f * 0.5f;
  p = p * f + 1.110066494232562e-1f * 0.5f;
  p = p * f + 4.804529582726024e-1f * 0.5f;
  p = p * f + 1.3862944057100842f * 0.5f;
  p = p * f + 1.f;
  return (vf)_mm512_scalef_ps((__m512)p, k);
}
#else
inline vf vexp2(vf x) {
  x = clamp_hi(clamp_lo(x, -126.f), 128.f);  // NaN flows on
  // Adding 1.5 * 2^23 rounds x to the nearest integer k, which then sits in the low mantissa
  // bits of t: k = bits(t) - bits(1.5 * 2^23), no float-to-int conversion needed.
  const vf t = x + 12582912.f;
  const vf f = x - (t - 12582912.f);  // exact, |f| <= 0.5
  // Cephes exp2f polynomial with every coefficient doubled, so that the scale is 2^(k-1) and
  // k = 128 still has a finite scale (p * 2^127 with p < 2 is finite when f < 0).
  vf p = f * 3.070672376639000e-4f + 2.679774880533148e-3f;
  p = p * f + 1.923687471534928e-2f;
  p = p * f + 1.110066494232562e-1f;
  p = p * f + 4.804529582726024e-1f;
  p = p * f + 1.3862944057100842f;
  p = p * f + 2.f;
  vu tb;
  std::memcpy(&tb, &t, sizeof tb);
  const vu bits = (tb - 0x4B400000u + 126u) << 23;  // 2^(k-1); k = -126 gives 0. NaN: p is NaN
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
#endif

inline vf vexp(vf x) { return vexp2(x * LOG2E); }

// log(1 + v) for v in [0, 1] as 2 atanh(s), s = v / (2 + v) <= 1/3: no cancellation for small v,
// series truncated at s^15 (next term < 1.5e-9 relative).
inline vf vlog1p_unit(vf v) {
  const vf s = v / (v + 2.f);
  const vf s2 = s * s;
  vf p = s2 * (1.f / 15) + 1.f / 13;
  p = p * s2 + 1.f / 11;
  p = p * s2 + 1.f / 9;
  p = p * s2 + 1.f / 7;
  p = p * s2 + 1.f / 5;
  p = p * s2 + 1.f / 3;
  p = p * s2 + 1.f;
  return 2.f * s * p;
}

// torch's softplus (beta 1, threshold 20), written max(x, 0) + log1p(exp(-|x|)) so nothing
// overflows; softplus(-inf) = 0, softplus(NaN) = NaN.
inline vf vsoftplus(vf x) {
  const vf ax = x < 0.f ? -x : x;
  const vf sp = (x > 0.f ? x : splat(0.f)) + vlog1p_unit(vexp(-ax));
  return x > 20.f ? x : sp;
}

inline vf vsigmoid(vf x) { return 1.f / (1.f + vexp(-x)); }

// dst[i] += sum of the W lanes of src[i], i < count. Sixteen vectors at a time go through a
// transpose-and-add tree (4 levels of two shuffles and an add) instead of 16 horizontal sums;
// N = 16 states per step is exactly one tree.
inline void reduce_lanes(const vf* src, int64_t count, float* dst) {
  int64_t i = 0;
#ifdef VM_HAS_SHUFFLEVECTOR
  for (; i + 16 <= count; i += 16) {
    const vf* s = src + i;
    vf a[8], b[4], c[2];
    for (int j = 0; j < 8; ++j)
      a[j] = __builtin_shufflevector(s[2 * j], s[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18,
                                     19, 20, 21, 22, 23) +
             __builtin_shufflevector(s[2 * j], s[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25,
                                     26, 27, 28, 29, 30, 31);
    for (int j = 0; j < 4; ++j)
      b[j] = __builtin_shufflevector(a[2 * j], a[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18,
                                     19, 24, 25, 26, 27) +
             __builtin_shufflevector(a[2 * j], a[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21,
                                     22, 23, 28, 29, 30, 31);
    for (int j = 0; j < 2; ++j)
      c[j] = __builtin_shufflevector(b[2 * j], b[2 * j + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20,
                                     21, 24, 25, 28, 29) +
             __builtin_shufflevector(b[2 * j], b[2 * j + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19,
                                     22, 23, 26, 27, 30, 31);
    const vf r = __builtin_shufflevector(c[0], c[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
                                         24, 26, 28, 30) +
                 __builtin_shufflevector(c[0], c[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23,
                                         25, 27, 29, 31);
    for (int j = 0; j < 16; ++j) dst[i + j] += r[j];
  }
#endif
  for (; i < count; ++i) {
    float acc = 0.f;
    for (int w = 0; w < W; ++w) acc += src[i][w];
    dst[i] += acc;
  }
}

#ifdef VM_HAS_SHUFFLEVECTOR
// 16 x 16 transpose in registers: stage M swaps bit M of the row index with bit M of the column
// index, pairing rows i and i | M; four stages swap all four bits.
template <int M, int... I>
inline vf merge_lo(vf a, vf b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, ((I & M) ? 16 + (I ^ M) : I)...);
}
template <int M, int... I>
inline vf merge_hi(vf a, vf b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, ((I & M) ? 16 + I : (I | M))...);
}
template <int M>
inline void transpose_stage(vf* r) {
  for (int i = 0; i < 16; ++i)
    if (!(i & M)) {
      const vf a = r[i], b = r[i | M];
      r[i] = merge_lo<M>(a, b, std::make_integer_sequence<int, 16>{});
      r[i | M] = merge_hi<M>(a, b, std::make_integer_sequence<int, 16>{});
    }
}
inline void transpose16(vf* r) {
  transpose_stage<1>(r), transpose_stage<2>(r), transpose_stage<4>(r), transpose_stage<8>(r);
}
#endif

// bf16 is the top half of an fp32: widening is a shift. Narrowing rounds to nearest even and
// turns NaN into 0x7FC0, exactly as c10::BFloat16 does, so that a bf16 result written here
// equals the fp32 result converted by torch, bit for bit.
inline float bf16_to_float(uint16_t h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  if (f != f) return 0x7FC0;
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return static_cast<uint16_t>((b + (((b >> 16) & 1u) + 0x7FFFu)) >> 16);
}
inline vf widen(vh h) {
  const vu b = __builtin_convertvector(h, vu) << 16;
  vf f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline vh narrow(vf f) {
  vu b;
  std::memcpy(&b, &f, sizeof b);
  const vu nan = (vu)(f != f);
  const vu r = (b + (((b >> 16) & 1u) + 0x7FFFu)) >> 16;
  return __builtin_convertvector((r & ~nan) | (0x7FC0u & nan), vh);
}

// A (Bsz, E, L) activation the kernels read or write in its own dtype, fp32 or bf16, with its own
// batch and row strides (each row of L contiguous): under bf16 autocast the mixer's u, delta, z
// and output are bf16, and converting each to fp32 and back outside the kernel cost more than
// the scan itself at 64 frames; with a batch above one, x and z are halves of the in-projection's
// (Bsz, 2E, L) output, and copying them to contiguous memory took a third of the time.
struct Act {
  void* p = nullptr;
  bool bf16 = false;
  int64_t sb = 0, se = 0;  // element strides of the batch and the channel
  explicit operator bool() const { return p != nullptr; }
  int64_t off(int64_t b, int64_t e) const { return b * sb + e * se; }
};

// n <= W floats in and out of a vector (the rest zero). A whole vector copies a constant size, which
// compiles to one vector load or store; a variable-size memcpy is a libc call each time (it made
// SiLU cost 4x the conv itself).
inline vf load_n(const float* p, int64_t n) {
  vf v{};
  if (n == W)
    std::memcpy(&v, p, sizeof v);
  else
    std::memcpy(&v, p, n * sizeof(float));
  return v;
}
inline void store_n(float* p, const vf& v, int64_t n) {
  if (n == W)
    std::memcpy(p, &v, sizeof v);
  else
    std::memcpy(p, &v, n * sizeof(float));
}

// Element loads and stores of an fp32 or a bf16 row.
inline float elem(const float* p, int64_t i) { return p[i]; }
inline float elem(const uint16_t* p, int64_t i) { return bf16_to_float(p[i]); }
inline vf load_vec(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline vf load_vec(const uint16_t* p) {
  vh h;
  std::memcpy(&h, p, sizeof h);
  return widen(h);
}
inline void put_elem(float* p, int64_t i, float v) { p[i] = v; }
inline void put_elem(uint16_t* p, int64_t i, float v) { p[i] = float_to_bf16(v); }
inline void store_lanes(float* p, const vf& v, int64_t n) { store_n(p, v, n); }
inline void store_lanes(uint16_t* p, const vf& v, int64_t n) {
  const vh h = narrow(v);
  if (n == W)
    std::memcpy(p, &h, sizeof h);
  else
    std::memcpy(p, &h, n * sizeof(uint16_t));
}

// Rows [e0, e0 + nl) x columns [t0, t0 + tc) of a row-major (.., L) array of fp32 or bf16 <->
// lanes of dst[t] (fp32). Whole 16 x 16 blocks go through registers (a scalar copy costs 32
// memory ops per step; this made the forward 6% and the backward 14% faster); lanes >= nl are
// left as they are (zero).
template <typename Elem>
inline void load_tile(vf* dst, const Elem* src, int64_t L, int nl, int tc) {
  int t = 0;
#ifdef VM_HAS_SHUFFLEVECTOR
  for (; t + 16 <= tc; t += 16) {
    vf r[16];
    for (int w = 0; w < 16; ++w) r[w] = w < nl ? load_vec(src + w * L + t) : vf{};
    transpose16(r);
    for (int i = 0; i < 16; ++i) dst[t + i] = r[i];
  }
#endif
  for (int w = 0; w < nl; ++w)
    for (int i = t; i < tc; ++i) dst[i][w] = elem(src + w * L, i);
}

template <typename Elem>
inline void store_tile(Elem* dst, const vf* src, int64_t L, int nl, int tc) {
  int t = 0;
#ifdef VM_HAS_SHUFFLEVECTOR
  for (; t + 16 <= tc; t += 16) {
    vf r[16];
    for (int i = 0; i < 16; ++i) r[i] = src[t + i];
    transpose16(r);
    for (int w = 0; w < nl; ++w) store_lanes(dst + w * L + t, r[w], W);
  }
#endif
  for (int w = 0; w < nl; ++w)
    for (int i = t; i < tc; ++i) put_elem(dst + w * L, i, src[i][w]);
}

// The same for an Act at element offset `off` with rows `L` elements apart.
inline void load_tile(vf* dst, const Act& a, int64_t off, int64_t L, int nl, int tc) {
  if (a.bf16) return load_tile(dst, static_cast<const uint16_t*>(a.p) + off, L, nl, tc);
  load_tile(dst, static_cast<const float*>(a.p) + off, L, nl, tc);
}
inline void store_tile(const Act& a, int64_t off, const vf* src, int64_t L, int nl, int tc) {
  if (a.bf16) return store_tile(static_cast<uint16_t*>(a.p) + off, src, L, nl, tc);
  store_tile(static_cast<float*>(a.p) + off, src, L, nl, tc);
}

// Software prefetch of rows [e0, e0 + nl) x columns [t0, t0 + tc) of a row-major (.., L) array
// (`elem` bytes per element), one cache line at a time; RW = 1 for rows about to be written. A
// work item walks W rows in step, 4 to 64 KB apart, alongside two to four other arrays: more
// streams than the hardware prefetchers follow, and without this the loads of the next tile
// waited on memory (perf put a third of the forward's samples on them at 12545 tokens).
template <int RW>
inline void prefetch_rows(const void* p, int64_t elem, int64_t off, int64_t L, int nl, int tc) {
  const char* base = static_cast<const char*>(p) + off * elem;
  const int64_t bytes = tc * elem;
  for (int w = 0; w < nl; ++w)
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(base + w * L * elem + o, RW, 3);
}
template <int RW>
inline void prefetch_rows(const Act& a, int64_t off, int64_t L, int nl, int tc) {
  if (a) prefetch_rows<RW>(a.p, a.bf16 ? 2 : 4, off, L, nl, tc);
}

struct Problem {
  int64_t Bsz, E, L, N, G, Eg, nblk;  // nblk: W-channel blocks per group
  Act u, delta, z;                    // (Bsz, E, L); z may be absent
  const float *A, *Bt, *Ct, *D, *bias;  // Bt, Ct: (Bsz, G, L, N)
  bool softplus, reverse;
  // Visiting order: the i-th tile visited and the i-th step within a tile of tc steps.
  int64_t tile(int64_t i, int64_t ntiles) const { return reverse ? ntiles - 1 - i : i; }
  int pos(int i, int tc) const { return reverse ? tc - 1 - i : i; }
  // Steps of the tile that starts at t0.
  int steps(int64_t t0) const { return static_cast<int>(std::min<int64_t>(T, L - t0)); }
};

// Prefetches the rows of delta, u (and z with `with_z`) that the tile at t0 reads.
inline void prefetch_inputs(const Problem& P, int64_t b, int64_t e0, int nl, int64_t t0, bool with_z) {
  const int tc = P.steps(t0);
  prefetch_rows<0>(P.delta, P.delta.off(b, e0) + t0, P.delta.se, nl, tc);
  prefetch_rows<0>(P.u, P.u.off(b, e0) + t0, P.u.se, nl, tc);
  if (with_z) prefetch_rows<0>(P.z, P.z.off(b, e0) + t0, P.z.se, nl, tc);
}

// Per-thread buffers, reused across work items. Lanes >= nl of the input tiles stay zero, so
// padded channels scan u = 0 with A = 0 and contribute nothing.
struct Scratch {
  std::vector<vf> raw, d, du, u, z, dout, sg, y, o1, o2, o3, o4, acc;  // (T,) tiles
  std::vector<vf> h, g, al2, av, dA, rb, rc;                 // (N,)
  std::vector<vf> hs, as;                                    // (T, N)
  std::vector<vf> ck;                                        // (L / T + 1, N)
  Scratch(int64_t N, int64_t L, bool backward) {
    for (auto* v : {&raw, &d, &du, &u, &z, &dout, &sg, &y, &o1, &o2, &o3, &o4, &acc}) v->assign(T, vf{});
    for (auto* v : {&h, &g, &al2, &av, &dA, &rb, &rc}) v->assign(N, vf{});
    if (backward) {
      for (auto* v : {&hs, &as}) v->assign(T * N, vf{});
      ck.assign(((L + T - 1) / T + 1) * N, vf{});
    }
  }
  void clear_inputs() {
    for (auto* v : {&raw, &u, &z, &dout}) std::fill(v->begin(), v->end(), vf{});
  }
};

struct Lanes {  // per-block constants
  vf D, bias;
};

Lanes setup_block(const Problem& P, int64_t e0, int nl, Scratch& S) {
  Lanes c{vf{}, vf{}};
  for (int64_t n = 0; n < P.N; ++n) {
    vf a{};
    for (int w = 0; w < nl; ++w) a[w] = P.A[(e0 + w) * P.N + n];
    S.av[n] = a;
    S.al2[n] = a * LOG2E;
  }
  for (int w = 0; w < nl; ++w) {
    if (P.D) c.D[w] = P.D[e0 + w];
    if (P.bias) c.bias[w] = P.bias[e0 + w];
  }
  S.clear_inputs();
  return c;
}

// Loads one tile of delta and u and forms d and d * u (and softplus'(delta + bias) if asked).
inline void prepare_tile(const Problem& P, int64_t b, int64_t e0, int64_t t0, int nl, int tc,
                         const Lanes& c, Scratch& S, bool want_sg) {
  load_tile(S.raw.data(), P.delta, P.delta.off(b, e0) + t0, P.delta.se, nl, tc);
  load_tile(S.u.data(), P.u, P.u.off(b, e0) + t0, P.u.se, nl, tc);
  for (int t = 0; t < tc; ++t) {
    const vf x = S.raw[t] + c.bias;
    const vf d = P.softplus ? vsoftplus(x) : x;
    S.d[t] = d;
    S.du[t] = d * S.u[t];
    if (want_sg) S.sg[t] = P.softplus ? (x > 20.f ? splat(1.f) : vsigmoid(x)) : splat(1.f);
  }
}

// One scan step over all n. Four partial sums for y keep the FMA chain short. STORE keeps the
// decays and states for the backward.
template <bool STORE>
inline vf step(vf* h, const vf* al2, vf d, vf du, const float* bt, const float* ct, int64_t N,
               vf* as_out, vf* hs_out) {
  vf y0{}, y1{}, y2{}, y3{};
  int64_t n = 0;
  for (; n + 4 <= N; n += 4) {
    vf a0 = vexp2(d * al2[n]), a1 = vexp2(d * al2[n + 1]);
    vf a2 = vexp2(d * al2[n + 2]), a3 = vexp2(d * al2[n + 3]);
    h[n] = a0 * h[n] + du * bt[n];
    h[n + 1] = a1 * h[n + 1] + du * bt[n + 1];
    h[n + 2] = a2 * h[n + 2] + du * bt[n + 2];
    h[n + 3] = a3 * h[n + 3] + du * bt[n + 3];
    y0 += h[n] * ct[n];
    y1 += h[n + 1] * ct[n + 1];
    y2 += h[n + 2] * ct[n + 2];
    y3 += h[n + 3] * ct[n + 3];
    if constexpr (STORE) {
      as_out[n] = a0, as_out[n + 1] = a1, as_out[n + 2] = a2, as_out[n + 3] = a3;
      hs_out[n] = h[n], hs_out[n + 1] = h[n + 1], hs_out[n + 2] = h[n + 2],
      hs_out[n + 3] = h[n + 3];
    }
  }
  for (; n < N; ++n) {
    const vf a = vexp2(d * al2[n]);
    h[n] = a * h[n] + du * bt[n];
    y0 += h[n] * ct[n];
    if constexpr (STORE) as_out[n] = a, hs_out[n] = h[n];
  }
  return (y0 + y1) + (y2 + y3);
}

// A tile's steps with the state size known, NN = N: the states stay in registers across the
// tile's steps instead of going through memory at every step. With Y, y[t] receives <h_t, C_t>
// (before D and the gate; the forward), else only the states advance (the backward's first pass).
template <int NN, bool Y>
inline void scan_tile(vf* h, const vf* al2, const vf* d, const vf* du, const float* Bt,
                      const float* Ct, const Problem& P, int tc, vf* y) {
  vf hr[NN];
  for (int n = 0; n < NN; ++n) hr[n] = h[n];
  for (int j = 0; j < tc; ++j) {
    const int t = P.pos(j, tc);
    const vf dt = d[t], dut = du[t];
    const float* bt = Bt + t * NN;
    vf acc[4] = {};
#pragma GCC unroll 16
    for (int n = 0; n < NN; ++n) {
      hr[n] = vexp2(dt * al2[n]) * hr[n] + dut * bt[n];
      if constexpr (Y) acc[n % 4] += hr[n] * Ct[t * NN + n];
    }
    if constexpr (Y) y[t] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  for (int n = 0; n < NN; ++n) h[n] = hr[n];
}

// The states of one tile of the backward's first pass (no C, no y).
inline void state_tile(vf* h, const vf* al2, const vf* d, const vf* du, const float* Bt,
                       const Problem& P, int tc, int64_t N) {
  if (N == 16) return scan_tile<16, false>(h, al2, d, du, Bt, nullptr, P, tc, nullptr);
  for (int j = 0; j < tc; ++j) {
    const int t = P.pos(j, tc);
    for (int64_t n = 0; n < N; ++n) h[n] = vexp2(d[t] * al2[n]) * h[n] + du[t] * Bt[t * N + n];
  }
}

void forward_item(const Problem& P, int64_t b, int64_t g, int64_t e0, int nl, const Act& out,
                  float* last, Scratch& S) {
  const int64_t L = P.L, N = P.N;
  const float* Bt = P.Bt + (b * P.G + g) * L * N;
  const float* Ct = P.Ct + (b * P.G + g) * L * N;
  const Lanes c = setup_block(P, e0, nl, S);
  const int64_t nck = (L + T - 1) / T;
  vf* h = S.h.data();
  std::fill(S.h.begin(), S.h.end(), vf{});
  // Every tile of u, delta and z is loaded before its outputs are stored: out may alias them.
  for (int64_t i = 0; i < nck; ++i) {
    const int64_t t0 = P.tile(i, nck) * T;
    const int tc = P.steps(t0);
    if (i + 1 < nck) {  // the next tile's rows, while this one is scanned
      const int64_t n0 = P.tile(i + 1, nck) * T;
      prefetch_inputs(P, b, e0, nl, n0, true);
      prefetch_rows<1>(out, out.off(b, e0) + n0, out.se, nl, P.steps(n0));
    }
    prepare_tile(P, b, e0, t0, nl, tc, c, S, false);
    if (P.z) load_tile(S.z.data(), P.z, P.z.off(b, e0) + t0, P.z.se, nl, tc);
    if (N == 16) {
      scan_tile<16, true>(h, S.al2.data(), S.d.data(), S.du.data(), Bt + t0 * N, Ct + t0 * N, P, tc,
                          S.y.data());
    } else {
      for (int j = 0; j < tc; ++j) {
        const int t = P.pos(j, tc);
        S.y[t] = step<false>(h, S.al2.data(), S.d[t], S.du[t], Bt + (t0 + t) * N, Ct + (t0 + t) * N,
                             N, nullptr, nullptr);
      }
    }
    for (int t = 0; t < tc; ++t) {
      vf y = S.y[t] + c.D * S.u[t];
      if (P.z) y *= S.z[t] * vsigmoid(S.z[t]);
      S.y[t] = y;
    }
    store_tile(out, out.off(b, e0) + t0, S.y.data(), out.se, nl, tc);
  }
  if (last)
    for (int w = 0; w < nl; ++w)
      for (int64_t n = 0; n < N; ++n) last[(b * P.E + e0 + w) * N + n] = h[n][w];
}

struct Grads {
  const float* dout;   // (Bsz, E, L)
  const float* dlast;  // (Bsz, E, N) or null
  float *du, *ddelta, *dz;           // (Bsz, E, L)
  float *dA, *dD, *dbias;            // per batch partials: (Bsz, E, N), (Bsz, E), (Bsz, E)
  float *dB, *dC;                    // per worker partials: (workers, Bsz, G, L, N)
  float* out;                        // (Bsz, E, L) or null: the forward's output, recomputed on the way
  bool add_dz, add_out;              // dz / out hold values to add to instead of being overwritten
};

// store_tile into fp32 rows, or with `add` dst = dst + src, as dst.add_(src) computes it; `tmp` is
// a (T,) scratch tile. src is overwritten with what is stored.
inline void put_tile(float* dst, vf* src, vf* tmp, int64_t L, int nl, int tc, bool add) {
  if (add) {
    load_tile(tmp, dst, L, nl, tc);
    for (int t = 0; t < tc; ++t) src[t] = tmp[t] + src[t];
  }
  store_tile(dst, src, L, nl, tc);
}

void backward_item(const Problem& P, const Grads& Gr, int64_t b, int64_t g, int64_t e0, int nl,
                   int64_t tid, Scratch& S) {
  const int64_t L = P.L, N = P.N;
  const int64_t row0 = (b * P.E + e0) * L;
  const float* Bt = P.Bt + (b * P.G + g) * L * N;
  const float* Ct = P.Ct + (b * P.G + g) * L * N;
  float* dBt = Gr.dB + ((tid * P.Bsz + b) * P.G + g) * L * N;
  float* dCt = Gr.dC + ((tid * P.Bsz + b) * P.G + g) * L * N;
  const Lanes c = setup_block(P, e0, nl, S);
  const int64_t nck = (L + T - 1) / T;
  vf* h = S.h.data();
  vf* gs = S.g.data();
  vf* al2 = S.al2.data();

  // Pass 1: the state entering each tile (in visiting order), ck[k] for tile k.
  std::fill(S.h.begin(), S.h.end(), vf{});
  for (int64_t i = 0; i < nck; ++i) {
    const int64_t k = P.tile(i, nck), t0 = k * T;
    const int tc = P.steps(t0);
    std::copy(h, h + N, S.ck.begin() + k * N);
    if (i + 1 < nck) prefetch_inputs(P, b, e0, nl, P.tile(i + 1, nck) * T, false);
    prepare_tile(P, b, e0, t0, nl, tc, c, S, false);
    state_tile(h, al2, S.d.data(), S.du.data(), Bt + t0 * N, P, tc, N);
  }

  // Pass 2: tiles against the visiting order. gs carries exp(d_{t+1} A) * dL/dh_{t+1} (t + 1:
  // the next step visited); it starts at the last state's gradient.
  for (int64_t n = 0; n < N; ++n) {
    vf v{};
    if (Gr.dlast)
      for (int w = 0; w < nl; ++w) v[w] = Gr.dlast[(b * P.E + e0 + w) * N + n];
    gs[n] = v;
    S.dA[n] = vf{};
  }
  vf dD{}, dbias{};
  for (int64_t i = nck - 1; i >= 0; --i) {
    const int64_t k = P.tile(i, nck), t0 = k * T;
    const int tc = P.steps(t0);
    if (i > 0) {  // the tile after this one, against the visiting order
      const int64_t n0 = P.tile(i - 1, nck) * T;
      prefetch_inputs(P, b, e0, nl, n0, true);
      prefetch_rows<0>(Gr.dout, 4, row0 + n0, L, nl, P.steps(n0));
      for (float* o : {Gr.du, Gr.ddelta, P.z ? Gr.dz : nullptr, Gr.out})
        if (o) prefetch_rows<1>(o, 4, row0 + n0, L, nl, P.steps(n0));
    }
    prepare_tile(P, b, e0, t0, nl, tc, c, S, true);
    if (P.z) load_tile(S.z.data(), P.z, P.z.off(b, e0) + t0, P.z.se, nl, tc);
    load_tile(S.dout.data(), Gr.dout + row0 + t0, L, nl, tc);
    // Recompute states h_t and decays a_t of this tile; y (before the gate) is needed for dz.
    std::copy(S.ck.begin() + k * N, S.ck.begin() + (k + 1) * N, h);
    for (int j = 0; j < tc; ++j) {
      const int t = P.pos(j, tc);
      S.y[t] = step<true>(h, al2, S.d[t], S.du[t], Bt + (t0 + t) * N, Ct + (t0 + t) * N, N,
                          S.as.data() + t * N, S.hs.data() + t * N) +
               c.D * S.u[t];
    }
    for (int j = tc - 1; j >= 0; --j) {
      const int t = P.pos(j, tc);
      const vf d = S.d[t], du = S.du[t], u = S.u[t];
      vf dy = S.dout[t];
      if (P.z) {
        const vf zt = S.z[t], s = vsigmoid(zt);
        S.o3[t] = dy * S.y[t] * s * (1.f + zt * (1.f - s));  // dz: silu'(z) = s (1 + z (1 - s))
        dy *= zt * s;
        S.o4[t] = S.y[t] * zt * s;   // the forward's output, as forward_item computes it
      } else {
        S.o4[t] = S.y[t];
      }
      dD += dy * u;
      const float* bt = Bt + (t0 + t) * N;
      const float* ct = Ct + (t0 + t) * N;
      const vf* hs = S.hs.data() + t * N;
      const vf* as = S.as.data() + t * N;
      // the state before this step: the previous step visited, or the tile's entry state
      const vf* hp = j > 0 ? S.hs.data() + P.pos(j - 1, tc) * N : S.ck.data() + k * N;
      vf* rb = S.rb.data();
      vf* rc = S.rc.data();
      vf sbu0{}, sbu1{}, sda0{}, sda1{};
      int64_t n = 0;
      for (; n + 2 <= N; n += 2) {
        const vf g0 = gs[n] + dy * ct[n], g1 = gs[n + 1] + dy * ct[n + 1];  // dL/dh_t
        rc[n] = dy * hs[n], rc[n + 1] = dy * hs[n + 1];
        rb[n] = g0 * du, rb[n + 1] = g1 * du;
        sbu0 += g0 * bt[n], sbu1 += g1 * bt[n + 1];
        const vf q0 = g0 * hp[n] * as[n], q1 = g1 * hp[n + 1] * as[n + 1];  // dL/d(d A)
        sda0 += q0 * S.av[n], sda1 += q1 * S.av[n + 1];
        S.dA[n] += q0 * d, S.dA[n + 1] += q1 * d;
        gs[n] = g0 * as[n], gs[n + 1] = g1 * as[n + 1];
      }
      for (; n < N; ++n) {
        const vf g0 = gs[n] + dy * ct[n];
        rc[n] = dy * hs[n];
        rb[n] = g0 * du;
        sbu0 += g0 * bt[n];
        const vf q0 = g0 * hp[n] * as[n];
        sda0 += q0 * S.av[n];
        S.dA[n] += q0 * d;
        gs[n] = g0 * as[n];
      }
      const vf sbu = sbu0 + sbu1;
      const vf dd = (sbu * u + (sda0 + sda1)) * S.sg[t];
      dbias += dd;
      S.o1[t] = sbu * d + dy * c.D;  // du
      S.o2[t] = dd;                  // ddelta
      // Sum the lanes (channels) of this step's N vectors: dB_t and dC_t are shared by them.
      reduce_lanes(rb, N, dBt + (t0 + t) * N);
      reduce_lanes(rc, N, dCt + (t0 + t) * N);
    }
    store_tile(Gr.du + row0 + t0, S.o1.data(), L, nl, tc);
    store_tile(Gr.ddelta + row0 + t0, S.o2.data(), L, nl, tc);
    if (P.z) put_tile(Gr.dz + row0 + t0, S.o3.data(), S.acc.data(), L, nl, tc, Gr.add_dz);
    if (Gr.out) put_tile(Gr.out + row0 + t0, S.o4.data(), S.acc.data(), L, nl, tc, Gr.add_out);
  }
  for (int w = 0; w < nl; ++w) {
    const int64_t e = b * P.E + e0 + w;
    for (int64_t n = 0; n < N; ++n) Gr.dA[e * N + n] = S.dA[n][w];
    Gr.dD[e] = dD[w];
    Gr.dbias[e] = dbias[w];
  }
}

// Flush denormals for the kernel's duration on this thread (x86 only), restoring afterwards.
struct FlushDenormals {
#ifdef VM_HAS_MXCSR
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

at::Tensor f32(const at::Tensor& x) { return x.to(at::kFloat).contiguous(); }

// Whether a (Bsz, E, L) tensor's rows are contiguous (any batch and channel strides).
bool rows_contiguous(const at::Tensor& x) { return x.size(2) <= 1 || x.stride(2) == 1; }

Act act_of(const at::Tensor& t) {
  return Act{t.data_ptr(), t.scalar_type() == at::kBFloat16, t.stride(0), t.stride(1)};
}

// x as an Act: fp32 or bf16 with contiguous rows as it is, anything else as a contiguous fp32
// copy (kept in `keep`).
Act act_in(const at::Tensor& x, at::Tensor& keep) {
  const bool as_is = (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && rows_contiguous(x);
  keep = as_is ? x : f32(x);
  return act_of(keep);
}

// The result of a kernel whose activations come in x's dtype: bf16 for bf16 (written directly),
// else fp32 (converted afterwards by the caller). `given`: the caller's memory for it, which must
// have that dtype, be contiguous and have x's shape.
at::Tensor act_out(const at::Tensor& x, const std::optional<at::Tensor>& given, const char* what) {
  const auto dt = x.scalar_type() == at::kBFloat16 ? at::kBFloat16 : at::kFloat;
  if (!given.has_value() || !given->defined()) return at::empty(x.sizes(), x.options().dtype(dt));
  TORCH_CHECK(given->scalar_type() == dt && given->dim() == 3 && rows_contiguous(*given) &&
                  given->sizes() == x.sizes(),
              what, ": out must have the input's shape, contiguous rows, and be bf16 for a bf16 input, else fp32");
  return *given;
}

const float* opt_ptr(const std::optional<at::Tensor>& x, at::Tensor& keep) {
  if (!x.has_value() || !x->defined()) return nullptr;
  keep = f32(*x);
  return keep.data_ptr<float>();
}

// Small reshuffles run as plain loops on the calling thread: each at:: op would open an OpenMP
// region, and on a loaded machine every region waits for a descheduled thread (measured: the
// backward took 6x its CPU time with ~10 such regions, 2x with one).

// (Bsz, G, N, L) of any dtype and strides -> fp32 (Bsz, G, L, N), contiguous.
at::Tensor to_time_major(const at::Tensor& X) {
  const at::Tensor x = X.scalar_type() == at::kFloat ? X : X.to(at::kFloat);
  const int64_t Bsz = x.size(0), G = x.size(1), N = x.size(2), L = x.size(3);
  at::Tensor out = at::empty({Bsz, G, L, N}, x.options());
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t s0 = x.stride(0), s1 = x.stride(1), s2 = x.stride(2), s3 = x.stride(3);
  for (int64_t b = 0; b < Bsz; ++b)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n) {
        const float* s = src + b * s0 + g * s1 + n * s2;
        float* d = dst + (b * G + g) * L * N + n;
        for (int64_t l = 0; l < L; ++l) d[l * N] = s[l * s3];
      }
  return out;
}

struct Prepared {
  Problem P;
  at::Tensor u, delta, A, Bt, Ct, D, z, bias;  // contiguous (fp32, or bf16 for u, delta, z); keep the pointers alive
};

Prepared prepare(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                 const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                 const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& bias,
                 bool softplus, bool reverse) {
  TORCH_CHECK(u.dim() == 3 && B.dim() == 4 && C.dim() == 4 && A.dim() == 2,
              "selective_scan_cpu: expects u (B,E,L), A (E,N), B and C (B,G,N,L)");
  TORCH_CHECK(u.device().is_cpu(), "selective_scan_cpu: CPU tensors only");
  Prepared r;
  Problem& P = r.P;
  P.Bsz = u.size(0), P.E = u.size(1), P.L = u.size(2), P.N = A.size(1), P.G = B.size(1);
  TORCH_CHECK(P.G > 0 && P.E % P.G == 0, "selective_scan_cpu: E must be a multiple of G");
  P.Eg = P.E / P.G;
  P.nblk = (P.Eg + W - 1) / W;
  P.u = act_in(u, r.u), P.delta = act_in(delta, r.delta);
  if (z.has_value() && z->defined()) P.z = act_in(*z, r.z);
  r.A = f32(A);
  r.Bt = to_time_major(B);  // (Bsz, G, L, N)
  r.Ct = to_time_major(C);
  P.A = r.A.data_ptr<float>();
  P.Bt = r.Bt.data_ptr<float>(), P.Ct = r.Ct.data_ptr<float>();
  P.D = opt_ptr(D, r.D), P.bias = opt_ptr(bias, r.bias);
  P.softplus = softplus;
  P.reverse = reverse;
  return r;
}

// Work item i -> (batch, group, first channel, lanes in use). Blocks never straddle groups.
inline void item_coords(const Problem& P, int64_t i, int64_t& b, int64_t& g, int64_t& e0,
                        int& nl) {
  const int64_t k = i % P.nblk;
  g = (i / P.nblk) % P.G;
  b = i / (P.nblk * P.G);
  e0 = g * P.Eg + k * W;
  nl = static_cast<int>(std::min<int64_t>(W, P.Eg - k * W));
}

// Runs fn(item, thread, scratch) over all work items. Threads pull items from a shared counter
// rather than taking fixed halves: on a shared machine a descheduled thread then delays only its
// current item, not half the scan.
inline int64_t worker_count(const Problem& P) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), P.Bsz * P.G * P.nblk));
}

template <typename Init, typename F>
void for_each_item(const Problem& P, bool backward, const Init& init, const F& fn) {
  const int64_t items = P.Bsz * P.G * P.nblk;
  const int64_t threads = worker_count(P);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    FlushDenormals ftz;
    Scratch S(P.N, P.L, backward);
    const int64_t tid = at::get_thread_num();
    TORCH_CHECK(tid < threads, "selective_scan_cpu: thread id out of range");
    init(tid);
    for (int64_t i = next++; i < items; i = next++) fn(i, tid, S);
  });
}

std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta,
                                 const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& bias, bool softplus,
                                 bool return_last_state, bool reverse,
                                 const std::optional<at::Tensor>& out_buffer) {
  Prepared r = prepare(u, delta, A, B, C, D, z, bias, softplus, reverse);
  const Problem& P = r.P;
  auto opts = u.options().dtype(at::kFloat);
  // out_buffer: (Bsz, E, L) memory for the result (bf16 for a bf16 u, else fp32), which may be
  // u's, delta's or z's own (inference overwrites an input it no longer needs instead of
  // allocating).
  at::Tensor out = act_out(u, out_buffer, "selective_scan_cpu");
  at::Tensor last = return_last_state ? at::zeros({P.Bsz, P.E, P.N}, opts) : at::Tensor();
  const Act outa = act_of(out);
  float* lastp = return_last_state ? last.data_ptr<float>() : nullptr;
  for_each_item(P, false, [](int64_t) {}, [&](int64_t i, int64_t, Scratch& S) {
    int64_t b, g, e0;
    int nl;
    item_coords(P, i, b, g, e0, nl);
    forward_item(P, b, g, e0, nl, outa, lastp, S);
  });
  if (!out_buffer.has_value() || !out_buffer->defined()) out = out.to(u.scalar_type());
  return {out, last};
}

// An accumulation target of scan_bwd: absent, or fp32 contiguous (Bsz, E, L) on the CPU.
bool given_target(const std::optional<at::Tensor>& t, const Problem& P, const char* name) {
  if (!t.has_value() || !t->defined()) return false;
  TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous() &&
                  t->sizes() == at::IntArrayRef({P.Bsz, P.E, P.L}),
              "selective_scan_cpu backward: ", name, " must be a contiguous fp32 CPU tensor of shape (",
              P.Bsz, ", ", P.E, ", ", P.L, "), got ", t->scalar_type(), " ", t->sizes(),
              t->is_contiguous() ? "" : " (not contiguous)");
  return true;
}

// Returns fp32 grads (du, ddelta, dA, dB, dC, dD, dz, dbias); the caller casts them to the
// inputs' dtypes. dlast is the gradient of the returned last state, if any. With want_out, a
// ninth tensor: the forward's output (fp32), which the backward recomputes anyway, so that a
// caller that recomputes its forward can skip the scan's own. dz_into / out_into (fp32
// contiguous (Bsz, E, L), overlapping no input): the kernel adds dz / the output into them
// (into + new, the numbers of into.add_(new)) and returns them, instead of new tensors; a caller
// that sums the two directions' scans then allocates neither sum.
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta,
                                 const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& bias, bool softplus,
                                 const at::Tensor& dout, const std::optional<at::Tensor>& dlast,
                                 bool reverse, bool want_out,
                                 const std::optional<at::Tensor>& dz_into,
                                 const std::optional<at::Tensor>& out_into) {
  Prepared r = prepare(u, delta, A, B, C, D, z, bias, softplus, reverse);
  const Problem& P = r.P;
  const bool add_dz = given_target(dz_into, P, "dz_into");
  const bool add_out = given_target(out_into, P, "out_into");
  TORCH_CHECK(!add_dz || P.z, "selective_scan_cpu backward: dz_into needs z");
  TORCH_CHECK(!add_out || want_out, "selective_scan_cpu backward: out_into needs want_out");
  auto opts = u.options().dtype(at::kFloat);
  const int64_t threads = worker_count(P);  // one dB / dC partial per worker
  at::Tensor dout_f = f32(dout);
  at::Tensor dlast_f;
  const float* dlastp = opt_ptr(dlast, dlast_f);
  at::Tensor du = at::empty({P.Bsz, P.E, P.L}, opts), ddelta = at::empty_like(du);
  at::Tensor dz = add_dz ? *dz_into : P.z ? at::empty_like(du) : at::Tensor();
  at::Tensor fout = add_out ? *out_into : want_out ? at::empty_like(du) : at::Tensor();
  // Every entry of the per-batch partials is written by its item; the per-worker dB / dC
  // partials are zeroed by their worker, and only workers that ran are summed (a nested call
  // runs everything on worker 0).
  at::Tensor dAp = at::empty({P.Bsz, P.E, P.N}, opts);
  at::Tensor dDp = at::empty({P.Bsz, P.E}, opts), dbiasp = at::empty({P.Bsz, P.E}, opts);
  const int64_t part = P.Bsz * P.G * P.L * P.N;
  at::Tensor dBp = at::empty({threads, part}, opts), dCp = at::empty({threads, part}, opts);
  Grads Gr{dout_f.data_ptr<float>(), dlastp, du.data_ptr<float>(), ddelta.data_ptr<float>(),
           P.z ? dz.data_ptr<float>() : nullptr, dAp.data_ptr<float>(), dDp.data_ptr<float>(),
           dbiasp.data_ptr<float>(), dBp.data_ptr<float>(), dCp.data_ptr<float>(),
           want_out ? fout.data_ptr<float>() : nullptr, add_dz, add_out};
  std::vector<uint8_t> ran(threads, 0);
  for_each_item(
      P, true,
      [&](int64_t tid) {
        ran[tid] = 1;
        std::fill_n(Gr.dB + tid * part, part, 0.f);
        std::fill_n(Gr.dC + tid * part, part, 0.f);
      },
      [&](int64_t i, int64_t tid, Scratch& S) {
        int64_t b, g, e0;
        int nl;
        item_coords(P, i, b, g, e0, nl);
        backward_item(P, Gr, b, g, e0, nl, tid, S);
      });
  // Sum the partials: over workers for dB / dC (back to (Bsz, G, N, L)), over the batch for the
  // per-channel grads.
  at::Tensor dB = at::empty({P.Bsz, P.G, P.N, P.L}, opts), dC = at::empty_like(dB);
  const float *pb = Gr.dB, *pc = Gr.dC;
  float *ob = dB.data_ptr<float>(), *oc = dC.data_ptr<float>();
  for (int64_t bg = 0; bg < P.Bsz * P.G; ++bg)
    for (int64_t l = 0; l < P.L; ++l)
      for (int64_t n = 0; n < P.N; ++n) {
        const int64_t src = (bg * P.L + l) * P.N + n, dst = (bg * P.N + n) * P.L + l;
        float sb = 0.f, sc = 0.f;
        for (int64_t t = 0; t < threads; ++t)
          if (ran[t]) sb += pb[t * part + src], sc += pc[t * part + src];
        ob[dst] = sb, oc[dst] = sc;
      }
  at::Tensor dA = at::zeros({P.E, P.N}, opts), dD = at::zeros({P.E}, opts);
  at::Tensor dbias = at::zeros({P.E}, opts);
  for (int64_t b = 0; b < P.Bsz; ++b) {
    for (int64_t i = 0; i < P.E * P.N; ++i) dA.data_ptr<float>()[i] += Gr.dA[b * P.E * P.N + i];
    for (int64_t e = 0; e < P.E; ++e) {
      dD.data_ptr<float>()[e] += Gr.dD[b * P.E + e];
      dbias.data_ptr<float>()[e] += Gr.dbias[b * P.E + e];
    }
  }
  if (want_out) return {du, ddelta, dA, dB, dC, dD, dz, dbias, fout};
  return {du, ddelta, dA, dB, dC, dD, dz, dbias};
}


// ---------------------------------------------------------------------------------------------
// Causal depthwise conv1d with optional SiLU, x (Bsz, E, L), w (E, K):
//   out[e, t] = act(bias[e] + sum_k w[e, k] x[e, t - K + 1 + k]),
// or with `reverse` (causal along t = L-1 .. 0, i.e. flip, conv, flip back without the copies):
//   out[e, t] = act(bias[e] + sum_k w[e, k] x[e, t + K - 1 - k]).
// One row (b, e) per task; the backward recomputes the pre-activation.

// s <- bias + causal conv of one row (zeros outside [0, L)); the same additions in the same
// order in both directions.
inline void conv_row(const float* x, const float* w, float bias, int64_t K, int64_t L, bool reverse,
                     float* s) {
  std::fill(s, s + L, bias);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t shift = K - 1 - k;
    const float wk = w[k];
    if (reverse)
      for (int64_t t = 0; t + shift < L; ++t) s[t] += wk * x[t + shift];
    else
      for (int64_t t = shift; t < L; ++t) s[t] += wk * x[t - shift];
  }
}

// f(v) over a row, W floats at a time through the vector helpers (tail padded with zeros).
template <typename F>
inline void map_row(float* dst, const float* src, int64_t L, const F& f) {
  for (int64_t t = 0; t < L; t += W) {
    const int64_t n = std::min<int64_t>(W, L - t);
    store_n(dst + t, f(load_n(src + t, n), t, n), n);
  }
}

// sum_t a[t] * b[t] (b = null: sum_t a[t]) in W-lane partial sums; a plain float loop would
// stay scalar, since the compiler may not reorder the additions.
inline float dot(const float* a, const float* b, int64_t n) {
  vf acc{};
  int64_t t = 0;
  for (; t + W <= n; t += W) {
    vf va, vb = splat(1.f);
    std::memcpy(&va, a + t, sizeof va);
    if (b) std::memcpy(&vb, b + t, sizeof vb);
    acc += va * vb;
  }
  float r = 0.f;
  for (int w = 0; w < W; ++w) r += acc[w];
  for (; t < n; ++t) r += a[t] * (b ? b[t] : 1.f);
  return r;
}

// out_buffer: as the scan's, fp32 (Bsz, E, L) contiguous memory for the result; it may be x's
// own (each row is computed into a scratch row first).
// dot(a, b, n) of the arrays read back to front, a[n-1], a[n-2], ...: the same lanes and the same
// order of additions as `dot` on flipped copies, so the reverse conv's dw / db equal flip ->
// conv -> flip's bit for bit.
inline float dot_rev(const float* a, const float* b, int64_t n) {
  auto load_rev = [](const float* p) {  // lane w <- p[W - 1 - w]
    vf v;
    std::memcpy(&v, p, sizeof v);
#ifdef VM_HAS_SHUFFLEVECTOR
    return __builtin_shufflevector(v, v, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#else
    vf r;
    for (int w = 0; w < W; ++w) r[w] = v[W - 1 - w];
    return r;
#endif
  };
  vf acc{};
  int64_t t = 0;
  for (; t + W <= n; t += W) {
    const vf va = load_rev(a + n - t - W);
    const vf vb = b ? load_rev(b + n - t - W) : splat(1.f);
    acc += va * vb;
  }
  float r = 0.f;
  for (int w = 0; w < W; ++w) r += acc[w];
  for (; t < n; ++t) r += a[n - 1 - t] * (b ? b[n - 1 - t] : 1.f);
  return r;
}

// One row of the forward in a single pass, W outputs at a time: bias, the K taps added in the
// order of conv_row (so the sums are conv_row's, bit for bit), SiLU, store. Chunks whose taps
// all fall inside [0, L) load whole vectors; the chunks at the ends take the taps one element
// at a time and skip those outside, as conv_row does. out may be x's own memory: a chunk reads
// its taps before it stores, and the chunks go against the taps' direction (last to first when
// the taps look back, first to last when they look ahead), so no chunk reads a stored element.
template <typename Src, typename Dst>
inline void conv_row_fwd(const Src* x, const float* w, float bias, int64_t K, int64_t L,
                         bool reverse, bool silu, Dst* out) {
  const int64_t chunks = (L + W - 1) / W;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t0 = (reverse ? c : chunks - 1 - c) * W;
    const int64_t n = std::min<int64_t>(W, L - t0);
    const bool inside = n == W && (reverse ? t0 + W + K - 1 <= L : t0 >= K - 1);
    vf acc = splat(bias);
    if (inside) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t shift = K - 1 - k;
        acc += w[k] * load_vec(x + (reverse ? t0 + shift : t0 - shift));
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        float v = bias;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t shift = K - 1 - k, j = reverse ? t0 + i + shift : t0 + i - shift;
          if (j >= 0 && j < L) v += w[k] * elem(x, j);
        }
        acc[i] = v;
      }
    }
    if (silu) acc = acc * vsigmoid(acc);
    store_lanes(out + t0, acc, n);
  }
}

// out_buffer: as the scan's (bf16 for a bf16 x, else fp32, contiguous); it may be x's own memory.
// bf16 is widened and narrowed in registers: nothing of (Bsz, E, L) size is converted outside.
at::Tensor conv_fwd(const at::Tensor& x, const at::Tensor& weight,
                    const std::optional<at::Tensor>& bias, bool silu, bool reverse,
                    const std::optional<at::Tensor>& out_buffer) {
  TORCH_CHECK(x.dim() == 3 && weight.dim() == 2 && x.size(1) == weight.size(0),
              "causal_conv1d_cpu: expects x (B,E,L) and weight (E,K)");
  const at::Tensor wf = f32(weight);
  at::Tensor bkeep, xkeep;
  const float* bp = opt_ptr(bias, bkeep);
  const Act xa = act_in(x, xkeep);
  const int64_t Bsz = x.size(0), E = x.size(1), L = x.size(2), K = weight.size(1);
  const bool given = out_buffer.has_value() && out_buffer->defined();
  at::Tensor out = act_out(x, out_buffer, "causal_conv1d_cpu");
  const Act oa = act_of(out);
  const float* wp = wf.data_ptr<float>();
  at::parallel_for(0, Bsz * E, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t e = r % E, bi = r / E;
      const float* wr = wp + e * K;
      const float b = bp ? bp[e] : 0.f;
      const int64_t xo = xa.off(bi, e), oo = oa.off(bi, e);
      if (xa.bf16 && oa.bf16)
        conv_row_fwd(static_cast<const uint16_t*>(xa.p) + xo, wr, b, K, L, reverse, silu,
                     static_cast<uint16_t*>(oa.p) + oo);
      else if (oa.bf16)  // (x bf16 with strided rows: act_in made an fp32 copy)
        conv_row_fwd(static_cast<const float*>(xa.p) + xo, wr, b, K, L, reverse, silu,
                     static_cast<uint16_t*>(oa.p) + oo);
      else
        conv_row_fwd(static_cast<const float*>(xa.p) + xo, wr, b, K, L, reverse, silu,
                     static_cast<float*>(oa.p) + oo);
    }
  });
  return given ? out : out.to(x.scalar_type());
}

// -> fp32 (dx, dweight, dbias or undefined)
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, bool silu,
                                 const at::Tensor& dout, bool reverse) {
  const at::Tensor xf = f32(x), wf = f32(weight), gf = f32(dout);
  at::Tensor bkeep;
  const float* bp = opt_ptr(bias, bkeep);
  const int64_t Bsz = x.size(0), E = x.size(1), L = x.size(2), K = weight.size(1);
  auto opts = x.options().dtype(at::kFloat);
  at::Tensor dx = at::empty({Bsz, E, L}, opts);
  at::Tensor dw = at::zeros({Bsz, E, K}, opts), db = at::zeros({Bsz, E}, opts);
  const float *xp = xf.data_ptr<float>(), *wp = wf.data_ptr<float>(), *gp = gf.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *dwp = dw.data_ptr<float>(), *dbp = db.data_ptr<float>();
  at::parallel_for(0, Bsz * E, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> ds(L);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t e = r % E;
      const float* xr = xp + r * L;
      const float* gr = gp + r * L;
      if (silu) {
        conv_row(xr, wp + e * K, bp ? bp[e] : 0.f, K, L, reverse, ds.data());
        map_row(ds.data(), ds.data(), L, [&](vf v, int64_t t, int64_t n) {
          const vf g = load_n(gr + t, n);
          const vf sg = vsigmoid(v);
          return g * sg * (1.f + v * (1.f - sg));
        });
      } else {
        std::copy(gr, gr + L, ds.begin());
      }
      float* dxr = dxp + r * L;
      std::fill(dxr, dxr + L, 0.f);
      dbp[r] = reverse ? dot_rev(ds.data(), nullptr, L) : dot(ds.data(), nullptr, L);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t shift = K - 1 - k;
        const float wk = wp[e * K + k];
        if (reverse) {
          for (int64_t t = 0; t + shift < L; ++t) dxr[t + shift] += wk * ds[t];
          dwp[r * K + k] = dot_rev(ds.data(), xr + shift, L - shift);
        } else {
          for (int64_t t = shift; t < L; ++t) dxr[t - shift] += wk * ds[t];
          dwp[r * K + k] = dot(ds.data() + shift, xr, L - shift);
        }
      }
    }
  });
  return {dx, dw.sum(0), bp ? db.sum(0) : at::Tensor()};
}


// ---------------------------------------------------------------------------------------------
// RMSNorm with a weight over the last dimension, x (R, D) fp32 (R rows), for training:
//   rstd = 1 / sqrt(mean(x^2) + eps)            out = x * rstd * w
//   dweight = sum over rows of dy * x * rstd    dx = rstd * (dy * w - x * rstd^2 * mean(dy * w * x))
// The caller computes rstd (R floats, kept for the backward) with the reference's torch ops, so
// that the forward's numbers are the reference's bit for bit (torch's reductions sum in an order
// of their own); the rest is one pass forward and one backward. Rows are cut into chunks of
// NORM_ROWS; dweight sums one partial per chunk, in chunk order, so its bits do not depend on
// the thread count.

constexpr int64_t NORM_ROWS = 256;

// Runs fn(first row, end row, chunk) over the chunks of R rows, in parallel.
template <typename F>
void for_each_row_chunk(int64_t R, const F& fn) {
  const int64_t chunks = (R + NORM_ROWS - 1) / NORM_ROWS;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) fn(c * NORM_ROWS, std::min(R, (c + 1) * NORM_ROWS), c);
  });
}

void check_norm_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& rstd) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 1 && x.size(1) == weight.size(0) && rstd.dim() == 1 &&
                  rstd.size(0) == x.size(0),
              "rms_norm_cpu: expects x (R, D), weight (D,) and rstd (R,), got ", x.sizes(), ", ",
              weight.sizes(), " and ", rstd.sizes());
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu() && rstd.device().is_cpu(),
              "rms_norm_cpu: CPU tensors only");
}

// -> out (R, D) = (x * rstd) * weight, fp32: the reference's two products in its order.
at::Tensor rms_norm_fwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& rstd) {
  check_norm_args(x, weight, rstd);
  const at::Tensor xf = f32(x), wf = f32(weight), rf = f32(rstd);
  const int64_t R = x.size(0), D = x.size(1);
  at::Tensor out = at::empty({R, D}, xf.options());
  const float *xp = xf.data_ptr<float>(), *wp = wf.data_ptr<float>(), *rp = rf.data_ptr<float>();
  float* op = out.data_ptr<float>();
  for_each_row_chunk(R, [&](int64_t r0, int64_t r1, int64_t) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * D;
      float* orow = op + r * D;
      const float rs = rp[r];
      int64_t j = 0;
      for (; j + W <= D; j += W) store_n(orow + j, load_vec(xr + j) * rs * load_vec(wp + j), W);
      for (; j < D; ++j) orow[j] = xr[j] * rs * wp[j];
    }
  });
  return out;
}

// -> (dx (R, D), dweight (D,)), fp32; dy of any floating dtype.
std::vector<at::Tensor> rms_norm_bwd(const at::Tensor& x, const at::Tensor& weight,
                                     const at::Tensor& rstd, const at::Tensor& dy) {
  check_norm_args(x, weight, rstd);
  TORCH_CHECK(dy.sizes() == x.sizes(), "rms_norm_cpu backward: expects dy of x's shape ", x.sizes(),
              ", got ", dy.sizes());
  const at::Tensor xf = f32(x), wf = f32(weight), rf = f32(rstd), gf = f32(dy);
  const int64_t R = x.size(0), D = x.size(1);
  const int64_t chunks = (R + NORM_ROWS - 1) / NORM_ROWS;
  at::Tensor dx = at::empty({R, D}, xf.options());
  at::Tensor partial = at::zeros({chunks, D}, xf.options());  // dweight per chunk of rows
  const float *xp = xf.data_ptr<float>(), *wp = wf.data_ptr<float>();
  const float *rp = rf.data_ptr<float>(), *gp = gf.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *pp = partial.data_ptr<float>();
  for_each_row_chunk(R, [&](int64_t r0, int64_t r1, int64_t c) {
    float* dw = pp + c * D;
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = xp + r * D, *gr = gp + r * D;
      float* dxr = dxp + r * D;
      const float rs = rp[r];
      vf acc{};
      int64_t j = 0;
      for (; j + W <= D; j += W) acc += load_vec(gr + j) * load_vec(wp + j) * load_vec(xr + j);
      float s = 0.f;
      for (int w = 0; w < W; ++w) s += acc[w];
      for (; j < D; ++j) s += gr[j] * wp[j] * xr[j];
      const float k = rs * rs * (s / static_cast<float>(D));
      for (j = 0; j + W <= D; j += W) {
        const vf xv = load_vec(xr + j), gv = load_vec(gr + j);
        store_n(dxr + j, rs * (gv * load_vec(wp + j) - xv * k), W);
        store_n(dw + j, load_vec(dw + j) + gv * xv * rs, W);
      }
      for (; j < D; ++j) {
        dxr[j] = rs * (gr[j] * wp[j] - xr[j] * k);
        dw[j] += gr[j] * xr[j] * rs;
      }
    }
  });
  at::Tensor dweight = at::zeros({D}, xf.options());
  float* dwp = dweight.data_ptr<float>();
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t j = 0; j < D; ++j) dwp[j] += pp[c * D + j];
  return {dx, dweight};
}

}  // namespace

void register_allocator(pybind11::module& m);  // cpu_allocator.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "videomamba CPU kernels: selective scan, causal depthwise conv1d, RMSNorm, fwd and bwd";
  m.def("fwd", &scan_fwd, "selective scan forward -> (out, last_state or undefined)");
  m.def("bwd", &scan_bwd, "selective scan backward -> fp32 grads (+ the forward's output)",
        pybind11::arg("u"), pybind11::arg("delta"), pybind11::arg("A"), pybind11::arg("B"),
        pybind11::arg("C"), pybind11::arg("D"), pybind11::arg("z"), pybind11::arg("bias"),
        pybind11::arg("softplus"), pybind11::arg("dout"), pybind11::arg("dlast"),
        pybind11::arg("reverse"), pybind11::arg("want_out") = false,
        pybind11::arg("dz_into") = pybind11::none(), pybind11::arg("out_into") = pybind11::none());
  m.def("conv_fwd", &conv_fwd, "causal depthwise conv1d (+ SiLU) forward");
  m.def("conv_bwd", &conv_bwd, "causal depthwise conv1d (+ SiLU) backward -> fp32 grads");
  m.def("rms_norm_fwd", &rms_norm_fwd, "RMSNorm forward (x (R, D), weight, rstd (R,)) -> out, fp32");
  m.def("rms_norm_bwd", &rms_norm_bwd, "RMSNorm backward (x, weight, rstd, dy) -> (dx, dweight), fp32");
  register_allocator(m);
  m.attr("lanes") = W;
  m.attr("tile") = T;
}
