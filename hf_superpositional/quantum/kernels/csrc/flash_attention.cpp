// Flash-style quantum attention on CPU (hf_superpositional.quantum.kernels.flash):
//
//   out = softmax(z + Phi(frequency * z) + mask) V,   z = scale * Q K^T,
//   Phi(t) = sum_j table[j] cos(j t) + table[K+1+j] sin(j t)   (the gate is folded into the table),
//
// forward and backward, without ever holding more than one [block_q, block_kv] tile of scores per thread.
// Built with the other sources of this folder into one extension by quantum/kernels/cpp.py and registered
// as torch.ops.<HFSP_NAMESPACE>.{flash_forward, flash_backward} (a TORCH_LIBRARY_FRAGMENT of the library
// that circuit_term.cpp defines).
//
// The structure is that of PyTorch's own CPU flash attention (aten/src/ATen/native/cpu/
// FlashAttentionKernel.cpp): threads over (batch, head, query block) in the forward and over (batch, head)
// in the backward (at::parallel_for), tiles of queries x keys between two matrix products, and an online
// softmax that keeps a running maximum and sum per query and rescales the partial output. The forward saves
// only the output and the log-sum-exp per query; the backward recomputes each tile's probabilities from Q,
// K and that log-sum-exp (dV += P^T dO, dS = P (dP - rowsum(dO O)), dQ and dK from dS). Differences:
//   - the products go through at::native::cpublas::brgemm (below), which takes row-major operands as they
//     lie: the forward multiplies by K^T (transposed once per (batch, key head) and thread), and the
//     backward works on [keys, queries] tiles, S^T = K Q^T, so that dV += P^T dO and dK += dS^T Q read the
//     tiles as they are (Q^T and dO^T are made once per query block, dQ^T += K^T dS^T);
//   - a causal query block stops at its own last key (64 queries per block: about 32 x 64 masked scores
//     computed per block, where the 256 x 512 tiles of PyTorch's kernel compute up to 256 x 512).
// What the circuit adds, per score:
//   forward:  one sin/cos and K complex multiply-adds (Horner in exp(i t), as circuit_term.cpp);
//   backward: Phi by the same Horner rule (the same rounding as the forward, so the recomputed probabilities
//             sum to 1 against the saved log-sum-exp) and Phi' from the derivative table (the chain rule:
//             dz = dS (1 + Phi')); then, from cos t, sin t and dS kept per tile, the moments sum dS cos(j t),
//             sum dS sin(j t) (angle-addition recurrence) from which the coefficient and gate gradients
//             follow. The moments are summed in vector registers over a few key rows, in double per
//             (batch, head), then over the batch in a fixed order: no atomics, the same bits for any thread
//             count.
//
// Masks: `causal` is SDPA's upper-left rule (key j is seen by query i iff j <= i); `key_padding` [B, Skv]
// (true = attend) removes keys per batch row (an additive 0 / -inf bias in the forward, whole key rows of
// the backward's tiles). A query that sees no key at all gets what the dense reference
// (masked scores set to the lowest finite value, then softmax) gives: a uniform row over all Skv keys, i.e.
// the mean of V, and no gradient for Q, K or the circuit; its log-sum-exp is stored as +inf, which makes the
// backward's recomputed probabilities exactly 0 on that row (the uniform row's dV is added separately).
// Grouped-query attention: query head h reads key/value head h / group; with group > 1 the backward
// accumulates dK, dV per query head and sums each group at the end (no two threads write one row).

#include "simd.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#ifndef HFSP_NAMESPACE
#error "HFSP_NAMESPACE must be defined (the op namespace, unique per build)"
#endif

// The matrix products. Float: PyTorch's at::native::cpublas::brgemm (TORCH_API: oneDNN's batch-reduce GEMM
// micro-kernels, JIT-compiled for the CPU's widest vectors), which its own CPU flash attention uses for
// half precision. Declared here, weak, rather than through ATen/native/CPUBlas.h: a torch without it still
// loads this extension, and the products then run through the Fortran BLAS that libtorch_cpu exports
// (sgemm_/dgemm_: MKL or OpenBLAS; double always does), or at::addmm on views of the same buffers.
namespace at::native::cpublas {
void brgemm(int64_t M, int64_t N, int64_t K, int64_t ld_a, int64_t ld_b, int64_t ld_c, bool add_C, const float* A,
            const float* B, float* C, bool is_vnni) __attribute__((weak));
}  // namespace at::native::cpublas

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace {

using namespace hfsp;

// Tile sizes: queries x keys. Like PyTorch's kernel, blocks of 512 keys; 64 queries (its kernel takes 256
// for long sequences) because a causal query block computes about block_q^2 / 2 masked scores on the
// diagonal, and the backward's tiles are walked along their queries.
constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockKV = 512;
constexpr int kMaxUnrolled = 16;
// Key rows of a backward tile whose moments are summed in float lanes before they go to double.
constexpr int64_t kMomentRows = 16;

template <typename T>
constexpr T kInf = std::numeric_limits<T>::infinity();

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Row-major C[m, n] = A[m, k] B[k, n] (+ C when `accumulate`).
template <typename T>
void matmul(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
            bool accumulate) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  if constexpr (std::is_same<T, float>::value) {
    if (at::native::cpublas::brgemm != nullptr) {
      return at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, accumulate, a, b, c, false);
    }
  }
  // Column-major BLAS: C^T = B^T A^T.
  const char no = 'N';
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int LDA = static_cast<int>(ldb), LDB = static_cast<int>(lda), LDC = static_cast<int>(ldc);
  const T one = 1, beta = accumulate ? 1 : 0;
  if constexpr (std::is_same<T, float>::value) {
    if (sgemm_ != nullptr) return sgemm_(&no, &no, &M, &N, &K, &one, b, &LDA, a, &LDB, &beta, c, &LDC);
  } else {
    if (dgemm_ != nullptr) return dgemm_(&no, &no, &M, &N, &K, &one, b, &LDA, a, &LDB, &beta, c, &LDC);
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor out = at::from_blob(c, {m, n}, {ldc, 1}, options);
  out.addmm_(at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, options),
             at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, options), beta, one);
}

// dst[c, r] = src[r, c] for a [rows, cols] block (row strides ld_src, ld_dst), in cache-sized squares.
template <typename T>
void transpose(const T* src, int64_t ld_src, int64_t rows, int64_t cols, T* dst, int64_t ld_dst) {
  constexpr int64_t kSquare = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kSquare) {
    for (int64_t c0 = 0; c0 < cols; c0 += kSquare) {
      const int64_t r1 = std::min(rows, r0 + kSquare), c1 = std::min(cols, c0 + kSquare);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
      }
    }
  }
}

// A [B, H, S, D] tensor whose last dimension is contiguous.
template <typename T>
struct Heads {
  T* data;
  int64_t sb, sh, ss;
  explicit Heads(const at::Tensor& t)
      : data(t.data_ptr<std::remove_const_t<T>>()), sb(t.stride(0)), sh(t.stride(1)), ss(t.stride(2)) {}
  T* row(int64_t b, int64_t h, int64_t s) const { return data + b * sb + h * sh + s * ss; }
};

struct Problem {
  int64_t batch, heads, kv_heads, group, q_len, kv_len, dim;
  bool causal;
  int degree;
  // The keys [0, kv_end) that the queries [m0, m0 + rows) may see by the causal rule (all without it).
  int64_t kv_end(int64_t m0, int64_t rows) const { return causal ? std::min(kv_len, m0 + rows) : kv_len; }
};

// The key-padding mask as an additive bias per batch row: 0 (attend) or -inf, padded with -inf to whole
// vectors so that the last vector of a row may read past Skv. Undefined without a mask.
template <typename T>
at::Tensor key_bias(const std::optional<at::Tensor>& key_padding, const at::Tensor& like, int64_t batch,
                    int64_t kv_len, int64_t& stride) {
  stride = 0;
  if (!key_padding.has_value()) return at::Tensor();
  const at::Tensor mask = key_padding->contiguous();
  const bool* keep = mask.data_ptr<bool>();
  stride = round_up(kv_len, Simd<T>::lanes) + Simd<T>::lanes;
  at::Tensor bias = at::empty({batch, stride}, like.options());
  T* data = bias.data_ptr<T>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < stride; ++j) data[b * stride + j] = j < kv_len && keep[b * kv_len + j] ? T(0) : -kInf<T>;
  }
  return bias;
}

// Per-thread scratch memory, allocated as one tensor before the parallel region (as PyTorch's kernel does,
// and so that memory profiles see it) and handed out by at::get_thread_num(), in vector-aligned pieces.
template <typename T>
class Scratch {
 public:
  explicit Scratch(const std::vector<int64_t>& sizes, const at::Tensor& like) {
    for (int64_t size : sizes) {
      offsets_.push_back(per_thread_);
      per_thread_ += round_up(size, Simd<T>::lanes);
    }
    per_thread_ += Simd<T>::lanes;  // room to align each thread's start
    buffer_ = at::empty({at::get_num_threads(), per_thread_}, like.options());
  }
  // Piece `index` of the calling thread's memory.
  T* get(size_t index) const {
    T* start = buffer_.data_ptr<T>() + at::get_thread_num() * per_thread_;
    const auto misalignment = reinterpret_cast<uintptr_t>(start) / sizeof(T) % Simd<T>::lanes;
    return start + (Simd<T>::lanes - misalignment) % Simd<T>::lanes + offsets_[index];
  }

 private:
  at::Tensor buffer_;
  std::vector<int64_t> offsets_;
  int64_t per_thread_ = 0;
};

// The keys of one (batch, key head), transposed to [D, Skv] (row stride ld) for the products that take
// K^T; rebuilt only when a thread moves on to another (batch, key head).
template <typename T>
struct TransposedKeys {
  T* data;
  int64_t ld, b = -1, g = -1;
  void load(const Heads<const T>& k, int64_t batch, int64_t head, int64_t kv_len, int64_t dim) {
    if (batch == b && head == g) return;
    transpose<T>(k.row(batch, head, 0), k.ss, kv_len, dim, data, ld);
    b = batch;
    g = head;
  }
};

// Phi from sin(t) and cos(t): Horner in w = exp(i t) (table = [cosine_0..K, sine_0..K]), as term_value of
// circuit_term.cpp.
template <typename T, int KT>
inline __attribute__((always_inline)) typename Simd<T>::V series(typename Simd<T>::V s, typename Simd<T>::V c,
                                                                 const T* table, int degree) {
  using V = typename Simd<T>::V;
  const int K = KT >= 0 ? KT : degree;
  const T* cosine = table;
  const T* sine = table + K + 1;
  if (K == 0) return broadcast<T>(cosine[0]);
  V re = broadcast<T>(cosine[K]);
  V im = broadcast<T>(-sine[K]);
  for (int j = K - 1; j >= 1; --j) {
    V next_re = cosine[j] + re * c - im * s;
    im = re * s + im * c - sine[j];
    re = next_re;
  }
  return cosine[0] + re * c - im * s;
}

// ---------------------------------------------------------------------------------------------------
// Forward: tiles of [queries, keys], S = Q K^T, one query per row.
// ---------------------------------------------------------------------------------------------------

// One row of a tile, in place: x -> z + Phi(frequency z) + bias with z = scale x (rounded as the dense
// path's `logits * scale`), over the first `valid` keys; the lanes past `valid` in the last vector become
// -inf. Returns the row's maximum (-inf when nothing is valid).
template <typename T, int KT>
T score_row(T* x, int64_t valid, const T* bias, const T* table, int degree, T scale, T frequency) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::lanes;
  V best = broadcast<T>(-kInf<T>);
  for (int64_t c = 0; c < valid; c += L) {
    I keep = (I){} - 1;
    V zv = load<V>(x + c) * scale;
    if (c + L > valid) {
      keep = first_lanes<T>(valid - c);
      zv = (V)((I)zv & keep);
    }
    V s, co;
    sincos_any<T>(zv * frequency, s, co);
    V score = zv + series<T, KT>(s, co, table, degree);
    if (bias != nullptr) score += load<V>(bias + c);
    score = select<T>(keep, score, broadcast<T>(-kInf<T>));
    store(x + c, score);
    best = lane_max<T>(best, score);
  }
  return lane_maximum<T>(best);
}

// exp(score - max) in place over the row's computed vectors, 0 for the rest of its `cols`; returns the sum.
template <typename T>
T exp_row(T* z, int64_t valid, int64_t cols, T max) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  V total = {};
  int64_t c = 0;
  for (; c < valid; c += L) {
    V p = fast_exp<T>(load<V>(z + c) - max);
    store(z + c, p);
    total += p;
  }
  if (c < cols) std::fill(z + c, z + cols, T(0));
  return lane_sum<T>(total);
}

template <typename T, int KT>
void forward_impl(const Heads<const T>& q, const Heads<const T>& k, const Heads<const T>& v, const Heads<T>& out,
                  T* lse, const Problem& p, const T* table, T scale, T frequency, const T* bias,
                  int64_t bias_stride, const at::Tensor& like) {
  constexpr int L = Simd<T>::lanes;
  const int64_t D = p.dim, W = 2 * p.degree + 2;
  const int64_t block_q = std::min(kBlockQ, p.q_len), block_kv = std::min(kBlockKV, p.kv_len);
  const int64_t ld = round_up(block_kv, L), ld_keys = round_up(p.kv_len, L);
  const int64_t q_blocks = (p.q_len + block_q - 1) / block_q;
  const Scratch<T> scratch({block_q * ld, block_q * D, block_q, block_q, D, D * ld_keys}, like);
  at::parallel_for(0, p.batch * p.heads * q_blocks, 1, [&](int64_t begin, int64_t end) {
    T* const tile = scratch.get(0);
    T* const acc = scratch.get(1);
    T* const row_max = scratch.get(2);
    T* const row_sum = scratch.get(3);
    T* const mean_v = scratch.get(4);
    TransposedKeys<T> keys{scratch.get(5), ld_keys};
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bh = item / q_blocks;
      int64_t chunk = item % q_blocks;
      // Causal query blocks grow down a head: interleave short and long ones (0, n-1, 1, n-2, ...) so that a
      // thread's contiguous range of items holds about the same work.
      if (p.causal) chunk = chunk % 2 == 0 ? chunk / 2 : q_blocks - 1 - chunk / 2;
      const int64_t b = bh / p.heads, h = bh % p.heads, g = h / p.group;
      const int64_t m0 = chunk * block_q, rows = std::min(block_q, p.q_len - m0);
      const int64_t kv_end = p.kv_end(m0, rows);
      const T* coefficients = table + h * W;
      keys.load(k, b, g, p.kv_len, D);
      std::fill(row_max, row_max + rows, -kInf<T>);
      std::fill(row_sum, row_sum + rows, T(0));
      for (int64_t n0 = 0; n0 < kv_end; n0 += block_kv) {
        const int64_t cols = std::min(block_kv, kv_end - n0);
        matmul<T>(rows, cols, D, q.row(b, h, m0), q.ss, keys.data + n0, ld_keys, tile, ld, false);
        for (int64_t r = 0; r < rows; ++r) {
          T* z = tile + r * ld;
          // Keys this query sees in the tile by the causal rule (key padding is in the bias).
          const int64_t valid = p.causal ? std::max<int64_t>(0, std::min(cols, m0 + r - n0 + 1)) : cols;
          const T* row_bias = bias != nullptr ? bias + b * bias_stride + n0 : nullptr;
          const T tile_max = valid > 0 ? score_row<T, KT>(z, valid, row_bias, coefficients, p.degree, scale, frequency)
                                       : -kInf<T>;
          const T new_max = std::max(row_max[r], tile_max);
          if (new_max == -kInf<T>) {  // nothing seen yet on this row
            std::fill(z, z + cols, T(0));
            continue;
          }
          const T tile_sum = exp_row<T>(z, valid, cols, new_max);
          const T rescale = std::exp(row_max[r] - new_max);  // 0 for the first keys this row sees
          row_sum[r] = row_sum[r] * rescale + tile_sum;
          row_max[r] = new_max;
          if (n0 > 0 && rescale != T(1)) {
            T* a = acc + r * D;
            for (int64_t d = 0; d < D; ++d) a[d] *= rescale;
          }
        }
        matmul<T>(rows, D, cols, tile, ld, v.row(b, g, n0), v.ss, acc, D, n0 > 0);
      }
      bool have_mean = false;
      for (int64_t r = 0; r < rows; ++r) {
        T* o = out.row(b, h, m0 + r);
        T* l = lse + (b * p.heads + h) * p.q_len + m0 + r;
        if (row_max[r] == -kInf<T>) {  // no key at all: the reference's uniform row, the mean of V
          if (!have_mean) {
            std::fill(mean_v, mean_v + D, T(0));
            for (int64_t j = 0; j < p.kv_len; ++j) {
              const T* vj = v.row(b, g, j);
              for (int64_t d = 0; d < D; ++d) mean_v[d] += vj[d];
            }
            for (int64_t d = 0; d < D; ++d) mean_v[d] /= static_cast<T>(p.kv_len);
            have_mean = true;
          }
          std::copy(mean_v, mean_v + D, o);
          *l = kInf<T>;
          continue;
        }
        const T inverse = T(1) / row_sum[r];
        const T* a = acc + r * D;
        for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inverse;
        *l = row_max[r] + std::log(row_sum[r]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Backward: tiles of [keys, queries], S^T = K Q^T, one key per row, so that dV += P^T dO and
// dK += dZ^T Q read the tiles as they lie (the queries' transposes are made once per query block).
// ---------------------------------------------------------------------------------------------------

// One key's row of a tile (queries [first, rows) taking part): from x = q.k (in `z`) and dP (in `dp`), the
// probabilities P = exp(score - lse) (written over z) and dZ = scale dS (1 + sum_j derivative_j basis_j)
// (written over dp), with dS = P (dP - delta); cos t, sin t and dS also go to `cos_t`, `sin_t`, `ds` for the
// moments. Queries outside [first, rows) get 0 everywhere (and dS = 0).
template <typename T, int KT>
void gradient_row(T* z, T* dp, int64_t first, int64_t rows, const T* lse, const T* delta,
                  const T* table, const T* derivative, int degree, T scale, T frequency, T* cos_t, T* sin_t, T* ds) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::lanes;
  const int64_t start = first / L * L;
  std::fill(z, z + start, T(0));
  std::fill(dp, dp + start, T(0));
  for (int64_t r = start; r < rows; r += L) {
    I keep = (I){} - 1;
    if (r < first) keep = ~first_lanes<T>(first - r);
    if (r + L > rows) keep &= first_lanes<T>(rows - r);
    V zv = (V)((I)(load<V>(z + r) * scale) & keep);
    V s1, c1;
    sincos_any<T>(zv * frequency, s1, c1);
    // Phi by the forward's own Horner rule (the same rounding, so that exp(score - lse) sums to 1 as in the
    // forward), and Phi' likewise from the derivative table.
    const V phi = series<T, KT>(s1, c1, table, degree);
    const V slope = T(1) + series<T, KT>(s1, c1, derivative, degree);
    // lse is +inf for a query that sees no key: its probabilities come out exactly 0.
    V prob = select<T>(keep, fast_exp<T>(zv + phi - load<V>(lse + r)), V{});
    V dsv = select<T>(keep, prob * (load<V>(dp + r) - load<V>(delta + r)), V{});
    store(z + r, prob);
    store(dp + r, dsv * slope * scale);
    store(cos_t + r, c1);
    store(sin_t + r, s1);
    store(ds + r, dsv);
  }
}

// The moments sum dS cos(j t), sum dS sin(j t) over a tile's rows (each from its first vector), added to
// the double sums `moments` ([cos_0..K, sin_0..K]); accumulated in vector registers for a compile-time
// degree.
template <typename T, int KT>
void tile_moments(const T* cos_t, const T* sin_t, const T* ds, const int64_t* first, int64_t n_rows, int64_t rows,
                  int64_t ld, int degree, double* moments) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  const int K = KT >= 0 ? KT : degree;
  constexpr int kLocal = KT >= 0 ? 2 * KT + 2 : 1;
  V local[kLocal];
  std::vector<V> heap(KT >= 0 ? 0 : 2 * K + 2);
  V* m = KT >= 0 ? local : heap.data();
  for (int j = 0; j < 2 * K + 2; ++j) m[j] = V{};
  for (int64_t c = 0; c < n_rows; ++c) {
    if (c % kMomentRows == 0 && c > 0) {  // to double every few rows: float sums of a few hundred terms
      for (int j = 0; j < 2 * K + 2; ++j) {
        moments[j] += static_cast<double>(lane_sum<T>(m[j]));
        m[j] = V{};
      }
    }
    if (first[c] >= rows) continue;
    const int64_t offset = c * ld;
    for (int64_t r = first[c] / L * L; r < rows; r += L) {
      const V g = load<V>(ds + offset + r), c1 = load<V>(cos_t + offset + r), s1 = load<V>(sin_t + offset + r);
      m[0] += g;
      V cj = c1, sj = s1;
      for (int j = 1; j <= K; ++j) {
        if (j > 1) {
          V next_c = cj * c1 - sj * s1;
          sj = sj * c1 + cj * s1;
          cj = next_c;
        }
        m[j] += g * cj;
        m[K + 1 + j] += g * sj;
      }
    }
  }
  for (int j = 0; j < 2 * K + 2; ++j) moments[j] += static_cast<double>(lane_sum<T>(m[j]));
}

template <typename T, int KT>
void backward_impl(const Heads<const T>& grad_out, const Heads<const T>& q, const Heads<const T>& k,
                   const Heads<const T>& v, const Heads<const T>& out, const T* lse, const Heads<T>& grad_q,
                   const Heads<T>& grad_k, const Heads<T>& grad_v, bool per_query_head, const Problem& p,
                   const T* table, const T* derivative, T scale, T frequency, const T* bias, int64_t bias_stride,
                   double* moments, const at::Tensor& like) {
  constexpr int L = Simd<T>::lanes;
  const int64_t D = p.dim, W = 2 * p.degree + 2;
  const int64_t block_q = std::min(kBlockQ, p.q_len), block_kv = std::min(kBlockKV, p.kv_len);
  const int64_t ld = round_up(block_q, L), ld_keys = round_up(p.kv_len, L);
  const int64_t tile = block_kv * ld;
  const Scratch<T> scratch(
      {tile, tile, tile, tile, tile, 3 * D * ld, 2 * ld, D, D * ld_keys}, like);
  at::parallel_for(0, p.batch * p.heads, 1, [&](int64_t begin, int64_t end) {
    T* const probs = scratch.get(0);
    T* const grads = scratch.get(1);
    T* const cos_t = scratch.get(2);
    T* const sin_t = scratch.get(3);
    T* const ds = scratch.get(4);
    T* const q_t = scratch.get(5);  // Q^T, dO^T and dQ^T of the query block: [D, ld] each
    T* const grad_out_t = q_t + D * ld;
    T* const grad_q_t = grad_out_t + D * ld;
    T* const block_lse = scratch.get(6);
    T* const delta = block_lse + ld;
    T* const masked_grad = scratch.get(7);
    TransposedKeys<T> keys{scratch.get(8), ld_keys};
    std::vector<int64_t> first(block_kv);  // per key row of a tile: the first query that sees it
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / p.heads, h = bh % p.heads, g = h / p.group;
      const int64_t kv_head = per_query_head ? h : g;
      const T* coefficients = table + h * W;
      const T* slopes = derivative + h * W;
      const T* lse_head = lse + bh * p.q_len;
      double* item_moments = moments != nullptr ? moments + bh * W : nullptr;
      const T* row_bias = bias != nullptr ? bias + b * bias_stride : nullptr;
      keys.load(k, b, g, p.kv_len, D);
      std::fill(masked_grad, masked_grad + D, T(0));
      bool any_masked = false;
      for (int64_t m0 = 0; m0 < p.q_len; m0 += block_q) {
        const int64_t rows = std::min(block_q, p.q_len - m0);
        const int64_t kv_end = p.kv_end(m0, rows);
        transpose<T>(q.row(b, h, m0), q.ss, rows, D, q_t, ld);
        transpose<T>(grad_out.row(b, h, m0), grad_out.ss, rows, D, grad_out_t, ld);
        std::fill(grad_q_t, grad_q_t + D * ld, T(0));
        std::fill(block_lse, block_lse + ld, kInf<T>);
        std::fill(delta, delta + ld, T(0));
        for (int64_t r = 0; r < rows; ++r) {  // delta = rowsum(dO * O), the softmax backward's correction
          const T* go = grad_out.row(b, h, m0 + r);
          const T* o = out.row(b, h, m0 + r);
          T total = 0;
          for (int64_t d = 0; d < D; ++d) total += go[d] * o[d];
          delta[r] = total;
          block_lse[r] = lse_head[m0 + r];
          if (block_lse[r] == kInf<T>) {  // a query that sees no key (its uniform row's dV comes at the end)
            any_masked = true;
            for (int64_t d = 0; d < D; ++d) masked_grad[d] += go[d];
          }
        }
        for (int64_t n0 = 0; n0 < kv_end; n0 += block_kv) {
          const int64_t cols = std::min(block_kv, kv_end - n0);
          matmul<T>(cols, rows, D, k.row(b, g, n0), k.ss, q_t, ld, probs, ld, false);
          matmul<T>(cols, rows, D, v.row(b, g, n0), v.ss, grad_out_t, ld, grads, ld, false);
          for (int64_t c = 0; c < cols; ++c) {
            const int64_t j = n0 + c;
            // Queries that see key j: i >= j with the causal rule; none when the key is padding.
            first[c] = row_bias != nullptr && row_bias[j] != T(0) ? rows
                               : p.causal                                ? std::max<int64_t>(0, j - m0)
                                                                         : 0;
            if (first[c] >= rows) {
              std::fill(probs + c * ld, probs + c * ld + ld, T(0));
              std::fill(grads + c * ld, grads + c * ld + ld, T(0));
              continue;
            }
            gradient_row<T, KT>(probs + c * ld, grads + c * ld, first[c], rows, block_lse, delta,
                                coefficients, slopes, p.degree, scale, frequency, cos_t + c * ld, sin_t + c * ld,
                                ds + c * ld);
          }
          if (item_moments != nullptr) {
            tile_moments<T, KT>(cos_t, sin_t, ds, first.data(), cols, rows, ld, p.degree, item_moments);
          }
          // dV += P^T dO, dK += scale dS'^T Q, dQ^T += K^T scale dS'^T (dS' = dS (1 + Phi') is in `grads`).
          matmul<T>(cols, D, rows, probs, ld, grad_out.row(b, h, m0), grad_out.ss, grad_v.row(b, kv_head, n0),
                    grad_v.ss, true);
          matmul<T>(cols, D, rows, grads, ld, q.row(b, h, m0), q.ss, grad_k.row(b, kv_head, n0), grad_k.ss, true);
          matmul<T>(D, rows, cols, keys.data + n0, ld_keys, grads, ld, grad_q_t, ld, true);
        }
        for (int64_t r = 0; r < rows; ++r) {
          T* gq = grad_q.row(b, h, m0 + r);
          for (int64_t d = 0; d < D; ++d) gq[d] = grad_q_t[d * ld + r];
        }
      }
      if (any_masked) {  // the uniform rows of queries that see no key: dV_j += sum of their dO / Skv
        for (int64_t d = 0; d < D; ++d) masked_grad[d] /= static_cast<T>(p.kv_len);
        for (int64_t j = 0; j < p.kv_len; ++j) {
          T* gv = grad_v.row(b, kv_head, j);
          for (int64_t d = 0; d < D; ++d) gv[d] += masked_grad[d];
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Dispatch and the ops.
// ---------------------------------------------------------------------------------------------------

template <typename T>
using ForwardFn = decltype(&forward_impl<T, 0>);
template <typename T>
using BackwardFn = decltype(&backward_impl<T, 0>);

// Compile-time degrees for float (the fast path); double (tests, gradcheck) runs the runtime-degree loops.
template <typename T, int KT = 0>
std::pair<ForwardFn<T>, BackwardFn<T>> kernels_for(int degree) {
  if constexpr (!std::is_same<T, float>::value || KT > kMaxUnrolled) {
    return {&forward_impl<T, -1>, &backward_impl<T, -1>};
  } else {
    if (degree == KT) return {&forward_impl<T, KT>, &backward_impl<T, KT>};
    return kernels_for<T, KT + 1>(degree);
  }
}

Problem check_problem(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const at::Tensor& table,
                      bool causal, const std::optional<at::Tensor>& key_padding) {
  TORCH_CHECK(query.dim() == 4 && key.dim() == 4 && value.dim() == 4,
              "flash attention: query, key and value must be [B, H, S, D]");
  TORCH_CHECK(query.device().is_cpu() && key.device().is_cpu() && value.device().is_cpu() && table.device().is_cpu(),
              "flash attention: CPU tensors only");
  const auto dtype = query.scalar_type();
  TORCH_CHECK((dtype == at::kFloat || dtype == at::kDouble) && key.scalar_type() == dtype &&
                  value.scalar_type() == dtype && table.scalar_type() == dtype,
              "flash attention: float32 or float64 tensors of one dtype");
  for (const at::Tensor* t : {&query, &key, &value}) {
    TORCH_CHECK(t->stride(3) == 1, "flash attention: the last dimension must be contiguous");
  }
  Problem p;
  p.batch = query.size(0);
  p.heads = query.size(1);
  p.q_len = query.size(2);
  p.dim = query.size(3);
  p.kv_heads = key.size(1);
  p.kv_len = key.size(2);
  TORCH_CHECK(key.size(0) == p.batch && key.size(3) == p.dim && value.sizes() == key.sizes(),
              "flash attention: key and value must be [B, H_kv, S_kv, D] like the query's B and D");
  TORCH_CHECK(p.kv_heads >= 1 && p.heads % p.kv_heads == 0, "flash attention: query heads must be a multiple of key heads");
  TORCH_CHECK(p.q_len >= 1 && p.kv_len >= 1 && p.dim >= 1, "flash attention: empty attention");
  p.group = p.heads / p.kv_heads;
  p.causal = causal;
  TORCH_CHECK(table.dim() == 2 && table.is_contiguous() && table.size(0) == p.heads && table.size(1) >= 2 &&
                  table.size(1) % 2 == 0,
              "flash attention: table must be contiguous [H, 2K+2]");
  p.degree = static_cast<int>(table.size(1) / 2 - 1);
  if (key_padding.has_value()) {
    TORCH_CHECK(key_padding->scalar_type() == at::kBool && key_padding->dim() == 2 &&
                    key_padding->size(0) == p.batch && key_padding->size(1) == p.kv_len,
                "flash attention: key_padding must be a boolean [B, S_kv] mask");
  }
  return p;
}

std::tuple<at::Tensor, at::Tensor> flash_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                                 const at::Tensor& table, double scale, double frequency, bool causal,
                                                 const std::optional<at::Tensor>& key_padding) {
  const Problem p = check_problem(query, key, value, table, causal, key_padding);
  // The output is laid out [B, S, H, D], as the attention module reads it back (PyTorch's kernel does the
  // same): the caller's transpose(1, 2).contiguous() is then free.
  at::Tensor out = at::empty({p.batch, p.q_len, p.heads, p.dim}, query.options()).transpose(1, 2);
  at::Tensor lse = at::empty({p.batch, p.heads, p.q_len}, query.options());
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "flash_forward", [&] {
    using T = scalar_t;
    int64_t bias_stride = 0;
    const at::Tensor bias = key_bias<T>(key_padding, query, p.batch, p.kv_len, bias_stride);
    kernels_for<T>(p.degree).first(Heads<const T>(query), Heads<const T>(key), Heads<const T>(value), Heads<T>(out),
                                   lse.data_ptr<T>(), p, table.data_ptr<T>(), static_cast<T>(scale),
                                   static_cast<T>(frequency), bias.defined() ? bias.data_ptr<T>() : nullptr,
                                   bias_stride, query);
  });
  return {out, lse};
}

// Gradients of flash_forward: dq, dk, dv (like query, key, value) and the moments [H, 2K+2] (per head, summed
// over the batch): sum over scores of dS cos(j t) in columns 0..K and dS sin(j t) in K+1..2K+1.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> flash_backward(
    const at::Tensor& grad_out, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
    const at::Tensor& out, const at::Tensor& lse, const at::Tensor& table, const at::Tensor& derivative, double scale,
    double frequency, bool causal, const std::optional<at::Tensor>& key_padding, bool need_moments) {
  const Problem p = check_problem(query, key, value, table, causal, key_padding);
  TORCH_CHECK(grad_out.sizes() == query.sizes() && out.sizes() == query.sizes() && grad_out.stride(3) == 1 &&
                  out.stride(3) == 1 && grad_out.scalar_type() == query.scalar_type() &&
                  out.scalar_type() == query.scalar_type(),
              "flash attention: grad_out and out must be shaped and typed like the query, last dimension contiguous");
  TORCH_CHECK(lse.is_contiguous() && lse.dim() == 3 && lse.size(0) == p.batch && lse.size(1) == p.heads &&
                  lse.size(2) == p.q_len && lse.scalar_type() == query.scalar_type(),
              "flash attention: lse must be contiguous [B, H, S]");
  TORCH_CHECK(derivative.sizes() == table.sizes() && derivative.is_contiguous() &&
                  derivative.scalar_type() == table.scalar_type(),
              "flash attention: derivative must be shaped like the table");
  at::Tensor grad_q = at::zeros_like(query);
  const bool per_query_head = p.group > 1;
  const auto expanded = {p.batch, p.heads, p.kv_len, p.dim};
  at::Tensor grad_k = per_query_head ? at::zeros(expanded, key.options()) : at::zeros_like(key);
  at::Tensor grad_v = per_query_head ? at::zeros(expanded, value.options()) : at::zeros_like(value);
  const int64_t W = table.size(1);
  at::Tensor partial = at::zeros({need_moments ? p.batch * p.heads * W : 0}, table.options().dtype(at::kDouble));
  at::Tensor moments = need_moments ? at::zeros({p.heads, W}, table.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "flash_backward", [&] {
    using T = scalar_t;
    int64_t bias_stride = 0;
    const at::Tensor bias = key_bias<T>(key_padding, query, p.batch, p.kv_len, bias_stride);
    kernels_for<T>(p.degree).second(Heads<const T>(grad_out), Heads<const T>(query), Heads<const T>(key),
                                    Heads<const T>(value), Heads<const T>(out), lse.data_ptr<T>(), Heads<T>(grad_q),
                                    Heads<T>(grad_k), Heads<T>(grad_v), per_query_head, p, table.data_ptr<T>(),
                                    derivative.data_ptr<T>(), static_cast<T>(scale), static_cast<T>(frequency),
                                    bias.defined() ? bias.data_ptr<T>() : nullptr, bias_stride,
                                    need_moments ? partial.data_ptr<double>() : nullptr, query);
    if (need_moments) {  // per head, summed over the batch in a fixed order
      T* m = moments.data_ptr<T>();
      for (int64_t h = 0; h < p.heads; ++h) {
        for (int64_t j = 0; j < W; ++j) {
          double total = 0.0;
          for (int64_t b = 0; b < p.batch; ++b) total += partial.data_ptr<double>()[(b * p.heads + h) * W + j];
          m[h * W + j] = static_cast<T>(total);
        }
      }
    }
  });
  if (per_query_head) {  // each group's query heads summed onto its key/value head
    grad_k = grad_k.view({p.batch, p.kv_heads, p.group, p.kv_len, p.dim}).sum(2);
    grad_v = grad_v.view({p.batch, p.kv_heads, p.group, p.kv_len, p.dim}).sum(2);
  }
  return {grad_q, grad_k, grad_v, moments};
}

}  // namespace

// Indirection so that HFSP_NAMESPACE is macro-expanded before TORCH_LIBRARY_FRAGMENT pastes it into names.
#define HFSP_LIBRARY_FRAGMENT(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
HFSP_LIBRARY_FRAGMENT(HFSP_NAMESPACE, m) {
  m.def(
      "flash_forward(Tensor query, Tensor key, Tensor value, Tensor table, float scale, float frequency, bool causal, "
      "Tensor? key_padding) -> (Tensor, Tensor)",
      &flash_forward);
  m.def(
      "flash_backward(Tensor grad_out, Tensor query, Tensor key, Tensor value, Tensor out, Tensor lse, Tensor table, "
      "Tensor derivative, float scale, float frequency, bool causal, Tensor? key_padding, bool need_moments) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      &flash_backward);
}
