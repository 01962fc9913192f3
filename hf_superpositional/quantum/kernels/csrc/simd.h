// SIMD vectors, sin/cos and exp shared by the C++ kernels of this folder (circuit_term.cpp,
// flash_attention.cpp); hashed and copied with them by hf_superpositional/quantum/kernels/cpp.py.
//
// Vectorised with GCC/Clang vector extensions (explicit SIMD that every target lowers: SSE2, AVX2,
// AVX-512, NEON) rather than relying on the auto-vectoriser, and with our own sin/cos: Cody-Waite
// reduction to [-pi/4, pi/4] and the Cephes (float) / fdlibm (double) minimax polynomials, accurate to a
// few ulp while |t| stays under Trig<T>::limit; callers evaluate larger (or non-finite) angles with
// std::sin / std::cos instead, so every input gets libm's accuracy.

#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace hfsp {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(kVectorBytes)));
  typedef int32_t I __attribute__((vector_size(kVectorBytes)));
  static constexpr int lanes = kVectorBytes / 4;
};

template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(kVectorBytes)));
  typedef int64_t I __attribute__((vector_size(kVectorBytes)));
  static constexpr int lanes = kVectorBytes / 8;
};

template <typename T>
struct Trig;

// Cephes sinf/cosf: pi/2 split into three parts whose products with the quadrant q are exact for
// q < 2^13, then degree-7 / degree-8 polynomials on [-pi/4, pi/4].
template <>
struct Trig<float> {
  static constexpr float two_over_pi = 0.636619772367581343f;
  static constexpr float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float pio2_1 = 1.5703125f;
  static constexpr float pio2_2 = 4.837512969970703125e-4f;
  static constexpr float pio2_3 = 7.54978995489188216e-8f;
  static constexpr float limit = 8192.0f;
  static constexpr float s1 = -1.6666654611e-1f, s2 = 8.3321608736e-3f, s3 = -1.9515295891e-4f;
  static constexpr float c1 = 4.166664568298827e-2f, c2 = -1.388731625493765e-3f,
                         c3 = 2.443315711809948e-5f;
};

// fdlibm: pi/2 in three 33-bit parts (exact products for q < 2^20), __kernel_sin/__kernel_cos
// polynomials on [-pi/4, pi/4].
template <>
struct Trig<double> {
  static constexpr double two_over_pi = 6.36619772367581382433e-01;
  static constexpr double magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double pio2_1 = 1.57079632673412561417e+00;
  static constexpr double pio2_2 = 6.07710050630396597660e-11;
  static constexpr double pio2_3 = 2.02226624871116645580e-21;
  static constexpr double limit = 524288.0;
  static constexpr double s1 = -1.66666666666666324348e-01, s2 = 8.33333333332248946124e-03,
                          s3 = -1.98412698298579493134e-04, s4 = 2.75573137070700676789e-06,
                          s5 = -2.50507602534068634195e-08, s6 = 1.58969099521155010221e-10;
  static constexpr double c1 = 4.16666666666666019037e-02, c2 = -1.38888888888741095749e-03,
                          c3 = 2.48015872894767294178e-05, c4 = -2.75573143513906633035e-07,
                          c5 = 2.08757232129817482790e-09, c6 = -1.13596475577881948265e-11;
};

template <typename V, typename S>
inline __attribute__((always_inline)) V load(const S* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename S>
inline __attribute__((always_inline)) void store(S* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::V broadcast(T value) {
  typename Simd<T>::V v = {};
  return v + value;
}

// All-ones in the first `count` lanes.
template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::I first_lanes(int64_t count) {
  typename Simd<T>::I index;
  for (int l = 0; l < Simd<T>::lanes; ++l) index[l] = l;
  return index < static_cast<typename std::remove_reference<decltype(index[0])>::type>(count);
}

template <typename T>
inline __attribute__((always_inline)) bool all_lanes(typename Simd<T>::I mask) {
  bool all = true;
  for (int l = 0; l < Simd<T>::lanes; ++l) all &= mask[l] != 0;
  return all;
}

template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::V sin_poly(typename Simd<T>::V r, typename Simd<T>::V z) {
  using C = Trig<T>;
  if constexpr (std::is_same<T, float>::value) {
    return r + r * z * (C::s1 + z * (C::s2 + z * C::s3));
  } else {
    return r + r * z * (C::s1 + z * (C::s2 + z * (C::s3 + z * (C::s4 + z * (C::s5 + z * C::s6)))));
  }
}

template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::V cos_poly(typename Simd<T>::V z) {
  using C = Trig<T>;
  if constexpr (std::is_same<T, float>::value) {
    return T(1) - T(0.5) * z + z * z * (C::c1 + z * (C::c2 + z * C::c3));
  } else {
    return T(1) - T(0.5) * z + z * z * (C::c1 + z * (C::c2 + z * (C::c3 + z * (C::c4 + z * (C::c5 + z * C::c6)))));
  }
}

// sin(t) and cos(t) lane by lane, accurate for |t| <= Trig<T>::limit; `in_range` loses the lanes where
// |t| is larger or NaN (the caller then recomputes the tile with the scalar path).
template <typename T>
inline __attribute__((always_inline)) void fast_sincos(typename Simd<T>::V t, typename Simd<T>::V& sin_t,
                                                       typename Simd<T>::V& cos_t, typename Simd<T>::I& in_range) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  using C = Trig<T>;
  in_range &= (t <= C::limit) & (t >= -C::limit);
  // q = round(t * 2/pi) by the magic-number trick; the low bits of qm's representation hold q mod 4.
  V qm = t * C::two_over_pi + C::magic;
  V q = qm - C::magic;
  I n = (I)qm;  // vector cast: reinterprets the bits
  V r = t - q * C::pio2_1;
  r = r - q * C::pio2_2;
  r = r - q * C::pio2_3;
  V z = r * r;
  I s_bits = (I)sin_poly<T>(r, z);
  I c_bits = (I)cos_poly<T>(z);
  // Quadrant n: (sin, cos)(t) = (s, c), (c, -s), (-s, -c), (-c, s) for n mod 4 = 0, 1, 2, 3.
  using Lane = typename std::remove_reference<decltype(n[0])>::type;
  const I sign_bit = (I){} + std::numeric_limits<Lane>::min();  // the floating-point sign bit
  I odd = (n & 1) != 0;                                          // all-ones lanes where sin and cos swap
  I sin_sign = ((n & 2) != 0) & sign_bit;
  I cos_sign = (((n + 1) & 2) != 0) & sign_bit;
  sin_t = (V)(((s_bits & ~odd) | (c_bits & odd)) ^ sin_sign);
  cos_t = (V)(((c_bits & ~odd) | (s_bits & odd)) ^ cos_sign);
}

template <typename T>
inline __attribute__((always_inline)) T lane_sum(typename Simd<T>::V v) {
  T total = 0;
  for (int l = 0; l < Simd<T>::lanes; ++l) total += v[l];
  return total;
}

// sin(t) and cos(t) for every lane: the fast polynomials, and std::sin / std::cos for the lanes out of
// their range (or NaN), so that any input gets libm's accuracy. The slow branch is taken only by vectors
// holding such a lane (|t| > 8192 in float: logits this large do not occur in attention).
template <typename T>
inline __attribute__((always_inline)) void sincos_any(typename Simd<T>::V t, typename Simd<T>::V& sin_t,
                                                      typename Simd<T>::V& cos_t) {
  using I = typename Simd<T>::I;
  I in_range = (I){} - 1;
  fast_sincos<T>(t, sin_t, cos_t, in_range);
  if (__builtin_expect(!all_lanes<T>(in_range), 0)) {
    for (int l = 0; l < Simd<T>::lanes; ++l) {
      if (in_range[l] == 0) {
        sin_t[l] = std::sin(t[l]);
        cos_t[l] = std::cos(t[l]);
      }
    }
  }
}

// Cephes expf: n = round(x / ln 2), r = x - n ln 2 (in two parts), exp(r) by a degree-6 polynomial,
// scaled by 2^n through the exponent bits; about 1 ulp. Inputs below -87.33 (exp underflows, -inf
// included) give exactly 0, as the softmax of a masked score must; inputs are clamped at 88 above (the
// callers pass x <= 0 up to rounding). Double: std::exp lane by lane (the float64 path serves tests).
template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::V fast_exp(typename Simd<T>::V x) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  if constexpr (std::is_same<T, float>::value) {
    const I underflow = x < -87.33654f;
    x = x > 88.0f ? broadcast<float>(88.0f) : x;  // NaN stays NaN
    x = (V)((I)x & ~underflow);  // 0 where it underflows (also turns -inf into a harmless 0)
    V qm = x * 1.44269504088896341f + 12582912.0f;
    V n = qm - 12582912.0f;
    I bits = (I)qm - (I)broadcast<float>(12582912.0f);  // n as an integer (the low mantissa bits)
    V r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    V r2 = r * r;
    V p = broadcast<float>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    V scale = (V)((bits + 127) << 23);
    return (V)((I)(p * scale) & ~underflow);
  } else {
    V out;
    for (int l = 0; l < Simd<T>::lanes; ++l) out[l] = std::exp(x[l]);
    return out;
  }
}

// Lane by lane: `keep` ? a : b.
template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::V select(typename Simd<T>::I keep, typename Simd<T>::V a,
                                                                 typename Simd<T>::V b) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  return (V)(((I)a & keep) | ((I)b & ~keep));
}

template <typename T>
inline __attribute__((always_inline)) typename Simd<T>::V lane_max(typename Simd<T>::V a, typename Simd<T>::V b) {
  return a > b ? a : b;
}

template <typename T>
inline __attribute__((always_inline)) T lane_maximum(typename Simd<T>::V v) {
  T best = v[0];
  for (int l = 1; l < Simd<T>::lanes; ++l) best = v[l] > best ? v[l] : best;
  return best;
}

}  // namespace hfsp
