// The circuit term of the "cpp" circuit kernel (hf_superpositional.quantum.kernels.cpp).
//
// Built on first use with the other sources of this folder into one extension by
// hf_superpositional/quantum/kernels/cpp.py (torch.utils.cpp_extension.load) and registered as
// torch.ops.<HFSP_NAMESPACE>.{circuit_forward, circuit_backward}; this file defines the op library, the
// others add to it with TORCH_LIBRARY_FRAGMENT.
//
// The circuit term. Scores x arrive as a contiguous [blocks, block_size] matrix with one coefficient row
// per block (see kernels/__init__.py); every score is read once per pass and the trigonometric recurrence stays in
// registers. With z = scale * x (the attention logit) and t = frequency * z:
//
//   forward:  out = z + sum_j table[j] cos(j t) + table[K+1+j] sin(j t)
//             (Horner's rule in w = exp(i t), as series.fourier_series);
//   backward: grad_x = scale * g * (1 + sum_j derivative[j] cos(j t) + derivative[K+1+j] sin(j t)) and the
//             per-block moments sum g cos(j t), sum g sin(j t) (the coefficient and gate gradients), with
//             cos(j t) + i sin(j t) = w^j by repeated complex multiplication, each power used for both.
//
// With `causal`, a block is [query_len, row_len] and only columns c <= row r are computed: the others get
// the lowest finite value (forward) or a zero gradient (backward), as attention's causal mask gives.
//
// Vectorised with the SIMD vectors and sin/cos of simd.h (accurate to a few ulp while |t| stays under
// Trig<T>::limit). A tile holding a larger (or non-finite) angle is evaluated by the scalar path with
// std::sin / std::cos instead, so every input gets libm's accuracy.
// Threads: at::parallel_for over tiles (torch's own intra-op pool and thread count).

#include "simd.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#ifndef HFSP_NAMESPACE
#error "HFSP_NAMESPACE must be defined (the op namespace, unique per build)"
#endif

namespace {

using namespace hfsp;  // SIMD vectors, sin/cos and exp: simd.h, shared with flash_attention.cpp

// Scores per tile: the unit of parallel work and of the moments' partial sums (accumulated per lane in
// the compute dtype over at most kTile / lanes scores, then in double across tiles).
constexpr int64_t kTile = 4096;
// Below this many scores a pass runs on one thread (thread start-up would cost more than it saves).
constexpr int64_t kParallelScores = 32768;
// Degrees with a fully unrolled kernel (accumulators in registers); larger degrees use a runtime loop.
constexpr int kMaxUnrolled = 16;

// ---------------------------------------------------------------------------------------------------
// Per-score maths, shared by the forward and backward kernels. KT is the compile-time
// degree (or -1: the runtime K); with a constant K the loops unroll and everything stays in registers.
// ---------------------------------------------------------------------------------------------------

// z + Phi(frequency * z), where table = [cosine_0..K, sine_0..K].
template <typename T, int KT>
inline __attribute__((always_inline)) typename Simd<T>::V term_value(typename Simd<T>::V z, const T* table, int K,
                                                                     T frequency, typename Simd<T>::I& in_range) {
  using V = typename Simd<T>::V;
  const T* cosine = table;
  const T* sine = table + K + 1;
  V s, c;
  fast_sincos<T>(z * frequency, s, c, in_range);
  if (K == 0) return z + cosine[0];
  // Horner in w = exp(i t): p = c_K, p <- p w + c_j (c_j = cosine_j - i sine_j); the result is Re p.
  V re = broadcast<T>(cosine[K]);
  V im = broadcast<T>(-sine[K]);
  for (int j = K - 1; j >= 1; --j) {
    V next_re = cosine[j] + re * c - im * s;
    im = re * s + im * c - sine[j];
    re = next_re;
  }
  return z + cosine[0] + re * c - im * s;
}

template <typename T>
T term_value_scalar(T z, const T* table, int K, T frequency) {
  const T* cosine = table;
  const T* sine = table + K + 1;
  T t = z * frequency;
  T s = std::sin(t), c = std::cos(t);
  T re = cosine[K], im = -sine[K];
  T result = cosine[0];
  if (K > 0) {
    for (int j = K - 1; j >= 1; --j) {
      T next_re = cosine[j] + re * c - im * s;
      im = re * s + im * c - sine[j];
      re = next_re;
    }
    result += re * c - im * s;
  }
  return z + result;
}

// Moments accumulators of one tile: vectors, in registers for compile-time degrees.
template <typename T, int KT>
struct Accumulators {
  using V = typename Simd<T>::V;
  static constexpr int kLocal = KT >= 0 ? KT + 1 : 1;
  V local_cos[kLocal] = {}, local_sin[kLocal] = {};
  std::vector<V> heap;
  V* cos_ = local_cos;
  V* sin_ = local_sin;
  explicit Accumulators(int K) {
    if (KT < 0) {
      heap.assign(2 * (K + 1), V{});
      cos_ = heap.data();
      sin_ = heap.data() + K + 1;
    }
  }
  void add_to(double* moments, int K) const {  // moments[0..2K+1] += lane sums
    for (int j = 0; j <= K; ++j) {
      moments[j] += lane_sum<T>(cos_[j]);
      if (j > 0) moments[K + 1 + j] += lane_sum<T>(sin_[j]);
    }
  }
};

// g * (1 + sum_j derivative_j basis_j(frequency * z)), adding g * basis_j to the moments; cos(jt) + i sin(jt)
// = w^j by repeated complex multiplication, each power used for both and then dropped.
template <typename T, int KT>
inline __attribute__((always_inline)) typename Simd<T>::V term_slope(typename Simd<T>::V g, typename Simd<T>::V z,
                                                                     const T* derivative, int K, T frequency,
                                                                     Accumulators<T, KT>& acc, bool need_grad,
                                                                     bool need_moments, typename Simd<T>::I& in_range) {
  using V = typename Simd<T>::V;
  const T* d_cos = derivative;
  const T* d_sin = derivative + K + 1;
  V s1, c1;
  fast_sincos<T>(z * frequency, s1, c1, in_range);
  V cj = c1, sj = s1;
  V slope = broadcast<T>(T(1));  // derivative_0 = 0: a constant has no slope
  if (need_moments) acc.cos_[0] += g;
  for (int j = 1; j <= K; ++j) {
    if (j > 1) {
      V next_c = cj * c1 - sj * s1;
      sj = sj * c1 + cj * s1;
      cj = next_c;
    }
    if (need_grad) slope = slope + d_cos[j] * cj + d_sin[j] * sj;
    if (need_moments) {
      acc.cos_[j] += g * cj;
      acc.sin_[j] += g * sj;
    }
  }
  return g * slope;
}

template <typename T>
T term_slope_scalar(T g, T z, const T* derivative, int K, T frequency, double* moments) {
  const T* d_cos = derivative;
  const T* d_sin = derivative + K + 1;
  T t = z * frequency;
  T s1 = std::sin(t), c1 = std::cos(t);
  T cj = c1, sj = s1, slope = 1;
  if (moments != nullptr) moments[0] += g;
  for (int j = 1; j <= K; ++j) {
    if (j > 1) {
      T next_c = cj * c1 - sj * s1;
      sj = sj * c1 + cj * s1;
      cj = next_c;
    }
    slope += d_cos[j] * cj + d_sin[j] * sj;
    if (moments != nullptr) {
      moments[j] += double(g * cj);
      moments[K + 1 + j] += double(g * sj);
    }
  }
  return g * slope;
}

// ---------------------------------------------------------------------------------------------------
// Tiles and the circuit-term kernels.
// ---------------------------------------------------------------------------------------------------

// A tile: rows [row0, row1) of one block's [rows, row_len] score matrix, columns [col0, col1). With
// `causal`, row r keeps only columns c <= r (upper-left aligned, as SDPA's is_causal); the other scores
// of the tile are masked, which the caller writes. Rows are contiguous, so an unmasked tile of whole rows
// is one segment.
struct Tile {
  int64_t base;  // flat offset of the block's first score
  int64_t row0, row1, row_len, col0, col1;
  bool causal;

  int64_t valid_end(int64_t row) const { return causal ? std::min(col1, row + 1) : col1; }

  // f(offset, count, room) over the runs of unmasked scores; `room` >= count scores from `offset` lie in
  // the tile (the rest of the run's row is masked), so a vector may read and write past `count`.
  template <typename F>
  inline void for_each_segment(F&& f) const {
    if (!causal && col0 == 0 && col1 == row_len) {
      f(base + row0 * row_len, (row1 - row0) * row_len, (row1 - row0) * row_len);
      return;
    }
    for (int64_t r = row0; r < row1; ++r) {
      int64_t end = valid_end(r);
      if (end > col0) f(base + r * row_len + col0, end - col0, col1 - col0);
    }
  }

  template <typename S>
  inline void fill_masked(S* data, S value) const {
    if (!causal) return;
    for (int64_t r = row0; r < row1; ++r) {
      int64_t start = std::max(col0, valid_end(r));
      std::fill(data + base + r * row_len + start, data + base + r * row_len + col1, value);
    }
  }
};

// Forward of one tile: out = z + Phi(frequency z), z = scale * x, over the tile's unmasked scores. Returns
// false if an angle was out of the fast range: the caller then redoes the tile with the scalar path.
template <typename T, int KT>
bool forward_tile(const T* x, T* out, const Tile& tile, const T* table, int degree, T scale, T frequency) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::lanes;
  const int K = KT >= 0 ? KT : degree;
  I in_range = (I){} - 1;
  // z = x * scale is rounded exactly as torch's `scores * scale`.
  auto body = [&](V xv) -> V { return term_value<T, KT>(xv * scale, table, K, frequency, in_range); };
  tile.for_each_segment([&](int64_t offset, int64_t count, int64_t room) {
    const T* xs = x + offset;
    T* ys = out + offset;
    int64_t i = 0;
    for (; i + L <= count; i += L) store(ys + i, body(load<V>(xs + i)));
    if (i < count && i + L <= room) {
      // A last partial vector inside the tile: its extra lanes are masked scores, which the caller
      // overwrites with the mask value afterwards, so the whole vector is computed and stored.
      store(ys + i, body(load<V>(xs + i)));
    } else if (i < count) {  // the last partial vector at the tile's edge, through a zero-padded copy
      T buffer[L] = {};
      std::copy(xs + i, xs + count, buffer);
      store(buffer, body(load<V>(buffer)));
      std::copy(buffer, buffer + (count - i), ys + i);
    }
  });
  return all_lanes<T>(in_range);
}

template <typename T>
void forward_tile_scalar(const T* x, T* out, const Tile& tile, const T* table, int degree, T scale, T frequency) {
  tile.for_each_segment([&](int64_t offset, int64_t count, int64_t) {
    for (int64_t i = offset; i < offset + count; ++i) out[i] = term_value_scalar<T>(x[i] * scale, table, degree, frequency);
  });
}

// Backward of one tile (as forward_tile): grad_x = g * slope * scale. Adds the tile's 2K+2 moments to
// `moments` (in double) only when it succeeds, so that the scalar fallback does not count them twice.
template <typename T, int KT>
bool backward_tile(const T* g, const T* x, T* grad_x, const Tile& tile, const T* derivative, int degree,
                   T scale, T frequency, double* moments) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::lanes;
  const int K = KT >= 0 ? KT : degree;
  I in_range = (I){} - 1;
  Accumulators<T, KT> acc(K);
  const bool need_grad = grad_x != nullptr;
  const bool need_moments = moments != nullptr;
  auto body = [&](V gv, V xv) -> V {  // the chain rule through z = scale * x
    return term_slope<T, KT>(gv, xv * scale, derivative, K, frequency, acc, need_grad, need_moments, in_range) *
           scale;
  };
  tile.for_each_segment([&](int64_t offset, int64_t count, int64_t room) {
    const T* gs = g + offset;
    const T* xs = x + offset;
    int64_t i = 0;
    for (; i + L <= count; i += L) {
      V result = body(load<V>(gs + i), load<V>(xs + i));
      if (need_grad) store(grad_x + offset + i, result);
    }
    if (i < count && i + L <= room) {
      // A last partial vector inside the tile: g is zeroed on the masked lanes (nothing added to the
      // moments), whose gradient the caller then overwrites with 0.
      V gv = (V)((I)load<V>(gs + i) & first_lanes<T>(count - i));
      V result = body(gv, load<V>(xs + i));
      if (need_grad) store(grad_x + offset + i, result);
    } else if (i < count) {  // the last partial vector at the tile's edge: zero-padded copies
      T g_buffer[L] = {}, x_buffer[L] = {}, out_buffer[L];
      std::copy(gs + i, gs + count, g_buffer);
      std::copy(xs + i, xs + count, x_buffer);
      store(out_buffer, body(load<V>(g_buffer), load<V>(x_buffer)));
      if (need_grad) std::copy(out_buffer, out_buffer + (count - i), grad_x + offset + i);
    }
  });
  if (!all_lanes<T>(in_range)) return false;
  if (need_moments) acc.add_to(moments, K);
  return true;
}

// Whether backward_tile would succeed on this tile: the same angles, vector by vector, checked before
// anything is written (needed when the gradient overwrites `g`, which a failed fast pass would destroy).
template <typename T>
bool tile_in_range(const T* x, const Tile& tile, T scale, T frequency) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::lanes;
  I in_range = (I){} - 1;
  tile.for_each_segment([&](int64_t offset, int64_t count, int64_t room) {
    const T* xs = x + offset;
    int64_t i = 0;
    for (; i + L <= count; i += L) {
      V t = load<V>(xs + i) * scale * frequency;
      in_range &= (t <= Trig<T>::limit) & (t >= -Trig<T>::limit);
    }
    if (i < count) {
      T buffer[L] = {};
      std::copy(xs + i, xs + (i + L <= room ? i + L : count), buffer);
      V t = load<V>(buffer) * scale * frequency;
      in_range &= (t <= Trig<T>::limit) & (t >= -Trig<T>::limit);
    }
  });
  return all_lanes<T>(in_range);
}

template <typename T>
void backward_tile_scalar(const T* g, const T* x, T* grad_x, const Tile& tile, const T* derivative, int degree,
                          T scale, T frequency, double* moments) {
  tile.for_each_segment([&](int64_t offset, int64_t count, int64_t) {
    for (int64_t i = offset; i < offset + count; ++i) {
      T result = term_slope_scalar<T>(g[i], x[i] * scale, derivative, degree, frequency, moments) * scale;
      if (grad_x != nullptr) grad_x[i] = result;
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Dispatch, tiling and the ops.
// ---------------------------------------------------------------------------------------------------

template <typename T>
using ForwardFn = bool (*)(const T*, T*, const Tile&, const T*, int, T, T);
template <typename T>
using BackwardFn = bool (*)(const T*, const T*, T*, const Tile&, const T*, int, T, T, double*);

template <typename T>
struct Kernels {
  ForwardFn<T> forward;
  BackwardFn<T> backward;
};

template <typename T, int KT = 0>
Kernels<T> kernels_for(int degree) {
  if constexpr (KT > kMaxUnrolled) {
    return {&forward_tile<T, -1>, &backward_tile<T, -1>};
  } else {
    if (degree == KT) return {&forward_tile<T, KT>, &backward_tile<T, KT>};
    return kernels_for<T, KT + 1>(degree);
  }
}

// How a [blocks, rows * row_len] score matrix is cut into tiles of about kTile scores.
struct Tiling {
  int64_t rows, row_len, pieces_per_row, rows_per_tile, row_chunks, tiles_per_block, n_tiles, grain;
  bool causal;

  Tiling(int64_t n_blocks, int64_t block_size, int64_t query_len, bool causal_) : causal(causal_) {
    // Without a mask a block is flat: rows are contiguous, so the row structure does not matter.
    rows = causal ? query_len : 1;
    row_len = causal ? block_size / std::max<int64_t>(query_len, 1) : block_size;
    pieces_per_row = std::max<int64_t>(1, (row_len + kTile - 1) / kTile);
    rows_per_tile = pieces_per_row > 1 ? 1 : std::max<int64_t>(1, kTile / std::max<int64_t>(row_len, 1));
    row_chunks = (rows + rows_per_tile - 1) / rows_per_tile;
    tiles_per_block = row_chunks * pieces_per_row;
    n_tiles = n_blocks * tiles_per_block;
    int64_t tile_scores = std::max<int64_t>(1, std::min<int64_t>(rows_per_tile * row_len, rows * row_len));
    tile_scores = std::min<int64_t>(tile_scores, kTile);
    grain = std::max<int64_t>(1, kParallelScores / tile_scores);
  }

  int64_t block_of(int64_t index) const { return index / tiles_per_block; }

  Tile operator()(int64_t index) const {
    int64_t block = index / tiles_per_block;
    int64_t rest = index % tiles_per_block;
    int64_t chunk = rest / pieces_per_row, piece = rest % pieces_per_row;
    // Causal rows get longer down the block: interleave short and long row chunks (0, n-1, 1, n-2, ...)
    // so that each thread's contiguous range of tiles holds about the same work.
    if (causal) chunk = chunk % 2 == 0 ? chunk / 2 : row_chunks - 1 - chunk / 2;
    Tile tile;
    tile.base = block * rows * row_len;
    tile.row0 = chunk * rows_per_tile;
    tile.row1 = std::min(rows, tile.row0 + rows_per_tile);
    tile.row_len = row_len;
    tile.col0 = piece * kTile;
    tile.col1 = std::min(row_len, tile.col0 + kTile);
    tile.causal = causal;
    return tile;
  }
};

void check_inputs(const at::Tensor& scores, const at::Tensor& table, const char* table_name, int64_t query_len) {
  TORCH_CHECK(scores.device().is_cpu() && table.device().is_cpu(), "circuit kernel: CPU tensors only");
  TORCH_CHECK(scores.dim() == 2 && scores.is_contiguous(), "circuit kernel: scores must be a contiguous 2-D tensor");
  TORCH_CHECK(table.dim() == 2 && table.is_contiguous() && table.size(0) == scores.size(0),
              "circuit kernel: ", table_name, " must be contiguous [blocks, 2K+2]");
  TORCH_CHECK(table.size(1) >= 2 && table.size(1) % 2 == 0, "circuit kernel: ", table_name,
              " must have 2K+2 columns");
  TORCH_CHECK(scores.scalar_type() == table.scalar_type() &&
                  (scores.scalar_type() == at::kFloat || scores.scalar_type() == at::kDouble),
              "circuit kernel: float32 or float64 tensors of one dtype");
  TORCH_CHECK(query_len >= 1 && scores.size(1) % query_len == 0,
              "circuit kernel: query_len must divide the block size");
}

// Sums the per-tile moments into [blocks, width].
void reduce_moments(const std::vector<double>& partial, const Tiling& tiling, int64_t n_blocks, int width,
                    at::Tensor& moments) {
  AT_DISPATCH_FLOATING_TYPES(moments.scalar_type(), "reduce_moments", [&] {
    scalar_t* m = moments.data_ptr<scalar_t>();
    for (int64_t block = 0; block < n_blocks; ++block) {
      for (int j = 0; j < width; ++j) {
        double total = 0.0;
        for (int64_t k = 0; k < tiling.tiles_per_block; ++k) {
          total += partial[(block * tiling.tiles_per_block + k) * width + j];
        }
        m[block * width + j] = static_cast<scalar_t>(total);
      }
    }
  });
}

template <typename T>
void run_forward(const at::Tensor& scores, const at::Tensor& table, double scale, double frequency,
                 int64_t query_len, bool causal, at::Tensor& out) {
  const int width = static_cast<int>(table.size(1));
  const int degree = width / 2 - 1;
  const T* x = scores.data_ptr<T>();
  const T* coefficients = table.data_ptr<T>();
  T* y = out.data_ptr<T>();
  const T freq = static_cast<T>(frequency), factor = static_cast<T>(scale);
  const Kernels<T> kernels = kernels_for<T>(degree);
  Tiling tiling(scores.size(0), scores.size(1), query_len, causal);
  at::parallel_for(0, tiling.n_tiles, tiling.grain, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      Tile tile = tiling(index);
      const T* row = coefficients + tiling.block_of(index) * width;
      if (!kernels.forward(x, y, tile, row, degree, factor, freq)) {
        forward_tile_scalar<T>(x, y, tile, row, degree, factor, freq);
      }
      // What apply_attention_mask gives masked logits: the lowest finite value (softmax weight 0, no NaN).
      tile.fill_masked(y, std::numeric_limits<T>::lowest());
    }
  });
}

template <typename T>
void run_backward(const at::Tensor& grad, const at::Tensor& scores, const at::Tensor& derivative, double scale,
                  double frequency, int64_t query_len, bool causal, at::Tensor* grad_scores, at::Tensor* moments,
                  bool in_place) {
  const int64_t n_blocks = scores.size(0);
  const int width = static_cast<int>(derivative.size(1));
  const int degree = width / 2 - 1;
  const T* g = grad.data_ptr<T>();
  const T* x = scores.data_ptr<T>();
  const T* slopes = derivative.data_ptr<T>();
  T* gx = grad_scores != nullptr ? grad_scores->data_ptr<T>() : nullptr;
  const T freq = static_cast<T>(frequency), factor = static_cast<T>(scale);
  const Kernels<T> kernels = kernels_for<T>(degree);
  Tiling tiling(n_blocks, scores.size(1), query_len, causal);
  std::vector<double> partial(moments != nullptr ? tiling.n_tiles * width : 0, 0.0);
  at::parallel_for(0, tiling.n_tiles, tiling.grain, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      Tile tile = tiling(index);
      const T* row = slopes + tiling.block_of(index) * width;
      double* tile_moments = moments != nullptr ? partial.data() + index * width : nullptr;
      const bool fast = !in_place || tile_in_range<T>(x, tile, factor, freq);
      if (!fast || !kernels.backward(g, x, gx, tile, row, degree, factor, freq, tile_moments)) {
        backward_tile_scalar<T>(g, x, gx, tile, row, degree, factor, freq, tile_moments);
      }
      if (gx != nullptr) tile.fill_masked(gx, T(0));  // masked scores are constants
    }
  });
  if (moments != nullptr) reduce_moments(partial, tiling, n_blocks, width, *moments);
}

at::Tensor circuit_forward(const at::Tensor& scores, const at::Tensor& table, double scale, double frequency,
                           int64_t query_len, bool causal) {
  check_inputs(scores, table, "table", query_len);
  at::Tensor out = at::empty(scores.sizes(), scores.options());
  if (scores.numel() == 0) return out;
  if (scores.scalar_type() == at::kFloat) {
    run_forward<float>(scores, table, scale, frequency, query_len, causal, out);
  } else {
    run_forward<double>(scores, table, scale, frequency, query_len, causal, out);
  }
  return out;
}

// in_place: write the scores' gradient over `grad` (each element is read before it is written), for a
// caller that owns `grad` (fourier.py's fused softmax: the softmax backward's fresh output).
std::tuple<at::Tensor, at::Tensor> circuit_backward(const at::Tensor& grad, const at::Tensor& scores,
                                                    const at::Tensor& derivative, double scale, double frequency,
                                                    int64_t query_len, bool causal, bool need_scores,
                                                    bool need_moments, bool in_place) {
  check_inputs(scores, derivative, "derivative", query_len);
  TORCH_CHECK(grad.sizes() == scores.sizes() && grad.is_contiguous() &&
                  grad.scalar_type() == scores.scalar_type() && grad.device().is_cpu(),
              "circuit kernel: grad must be contiguous, shaped and typed like scores");
  at::Tensor grad_scores;
  if (need_scores) grad_scores = in_place ? grad : at::empty(scores.sizes(), scores.options());
  at::Tensor moments = need_moments ? at::zeros({scores.size(0), derivative.size(1)}, scores.options())
                                    : at::Tensor();
  if (scores.numel() == 0 || !(need_scores || need_moments)) return {grad_scores, moments};
  at::Tensor* gs = need_scores ? &grad_scores : nullptr;
  at::Tensor* mo = need_moments ? &moments : nullptr;
  if (scores.scalar_type() == at::kFloat) {
    run_backward<float>(grad, scores, derivative, scale, frequency, query_len, causal, gs, mo, in_place);
  } else {
    run_backward<double>(grad, scores, derivative, scale, frequency, query_len, causal, gs, mo, in_place);
  }
  return {grad_scores, moments};
}

}  // namespace

// Indirection so that HFSP_NAMESPACE is macro-expanded before TORCH_LIBRARY pastes it into names.
#define HFSP_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
HFSP_LIBRARY(HFSP_NAMESPACE, m) {
  m.def(
      "circuit_forward(Tensor scores, Tensor table, float scale, float frequency, int query_len, bool causal) "
      "-> Tensor",
      &circuit_forward);
  m.def(
      "circuit_backward(Tensor grad, Tensor scores, Tensor derivative, float scale, float frequency, "
      "int query_len, bool causal, bool need_scores, bool need_moments, bool in_place) -> (Tensor, Tensor)",
      &circuit_backward);
}
