// The circuit sampler of the "cpp" circuit kernel (hf_superpositional.quantum.kernels.cpp): Phi at the
// 2K+1 sample points of fourier.fourier_coefficients by statevector simulation in double precision, and its
// exact gradient by the adjoint method. Registered as torch.ops.<HFSP_NAMESPACE>.{circuit_samples,
// circuit_samples_backward}, a fragment of the op library that circuit_term.cpp defines.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#ifndef HFSP_NAMESPACE
#error "HFSP_NAMESPACE must be defined (the op namespace, unique per build)"
#endif

namespace {

// ---------------------------------------------------------------------------------------------------
// The circuit readout Phi at the 2K+1 sample points of fourier.fourier_coefficients, and its exact
// gradient in the angles by the adjoint method: one forward simulation, then the gates undone one by one
// while an adjoint state is carried back (dPhi/dtheta = Re <lambda| dG/dtheta psi>). Same circuit and
// conventions as quantum/simulation.py (Qiskit's): H on every qubit of |0..0>; per layer, per qubit i,
// RY(ry[l,i] + x) then RZ(rz[l,i]); then CNOT(i -> i+1) for i = 0..n-2; qubit k is bit k of the index.
// Always in double precision; a state has 2^n amplitudes and every (angle set, point) pair is independent.
// ---------------------------------------------------------------------------------------------------

struct State {
  std::vector<double> re, im;
  explicit State(int64_t dim) : re(dim), im(dim) {}
};

// RY(a) = [[c, -s], [s, c]], c, s = cos(a/2), sin(a/2), on `qubit`.
void apply_ry(State& psi, int qubit, double angle) {
  const double c = std::cos(0.5 * angle), s = std::sin(0.5 * angle);
  const int64_t dim = static_cast<int64_t>(psi.re.size()), bit = int64_t(1) << qubit;
  for (int64_t b = 0; b < dim; ++b) {
    if (b & bit) continue;
    const int64_t b1 = b | bit;
    const double r0 = psi.re[b], i0 = psi.im[b], r1 = psi.re[b1], i1 = psi.im[b1];
    psi.re[b] = c * r0 - s * r1;
    psi.im[b] = c * i0 - s * i1;
    psi.re[b1] = s * r0 + c * r1;
    psi.im[b1] = s * i0 + c * i1;
  }
}

// RZ(a) = diag(exp(-i a/2), exp(i a/2)) on `qubit`.
void apply_rz(State& psi, int qubit, double angle) {
  const double c = std::cos(0.5 * angle), s = std::sin(0.5 * angle);
  const int64_t dim = static_cast<int64_t>(psi.re.size()), bit = int64_t(1) << qubit;
  for (int64_t b = 0; b < dim; ++b) {
    const double sign = (b & bit) ? 1.0 : -1.0;  // phase exp(sign * i a/2)
    const double r = psi.re[b], i = psi.im[b];
    psi.re[b] = c * r - sign * s * i;
    psi.im[b] = c * i + sign * s * r;
  }
}

void apply_cnot(State& psi, int control, int target) {
  const int64_t dim = static_cast<int64_t>(psi.re.size());
  const int64_t cbit = int64_t(1) << control, tbit = int64_t(1) << target;
  for (int64_t b = 0; b < dim; ++b) {
    if ((b & cbit) && !(b & tbit)) {
      std::swap(psi.re[b], psi.re[b | tbit]);
      std::swap(psi.im[b], psi.im[b | tbit]);
    }
  }
}

// Re <lambda| (-i/2) P psi> for P = Y or Z on `qubit`: the derivative of exp(-i a P/2) applied to the state
// before it, expressed with the state after it (the generator commutes with the gate).
double generator_overlap(const State& lambda, const State& psi, int qubit, bool pauli_y) {
  const int64_t dim = static_cast<int64_t>(psi.re.size()), bit = int64_t(1) << qubit;
  double total = 0.0;
  for (int64_t b = 0; b < dim; ++b) {
    if (b & bit) continue;
    const int64_t b1 = b | bit;
    if (pauli_y) {  // (-i/2) Y: (psi0, psi1) -> (-psi1 / 2, psi0 / 2)
      total += 0.5 * (-(lambda.re[b] * psi.re[b1] + lambda.im[b] * psi.im[b1]) +
                      (lambda.re[b1] * psi.re[b] + lambda.im[b1] * psi.im[b]));
    } else {  // (-i/2) Z: (psi0, psi1) -> (-i psi0 / 2, i psi1 / 2)
      total += 0.5 * ((lambda.re[b] * psi.im[b] - lambda.im[b] * psi.re[b]) -
                      (lambda.re[b1] * psi.im[b1] - lambda.im[b1] * psi.re[b1]));
    }
  }
  return total;
}

struct Circuit {
  const double* ry;  // [depth, n] of one angle set
  const double* rz;
  int depth, n_qubits;
};

State simulate(const Circuit& circuit, double x) {
  const int64_t dim = int64_t(1) << circuit.n_qubits;
  State psi(dim);
  std::fill(psi.re.begin(), psi.re.end(), std::pow(2.0, -0.5 * circuit.n_qubits));
  for (int l = 0; l < circuit.depth; ++l) {
    for (int i = 0; i < circuit.n_qubits; ++i) {
      apply_ry(psi, i, circuit.ry[l * circuit.n_qubits + i] + x);
      apply_rz(psi, i, circuit.rz[l * circuit.n_qubits + i]);
    }
    for (int i = 0; i + 1 < circuit.n_qubits; ++i) apply_cnot(psi, i, i + 1);
  }
  return psi;
}

double z_weight(int64_t index, int n_qubits) {  // sum_k <index|Z_k|index> = n - 2 popcount(index)
  int ones = 0;
  for (int k = 0; k < n_qubits; ++k) ones += (index >> k) & 1;
  return n_qubits - 2.0 * ones;
}

double readout_value(const State& psi, int n_qubits, bool amplitude) {
  double total = 0.0;
  if (amplitude) {  // sum_{k<n} Re <k|psi>
    for (int64_t k = 0; k < n_qubits && k < static_cast<int64_t>(psi.re.size()); ++k) total += psi.re[k];
  } else {  // sum_k <Z_k>
    for (int64_t b = 0; b < static_cast<int64_t>(psi.re.size()); ++b) {
      total += z_weight(b, n_qubits) * (psi.re[b] * psi.re[b] + psi.im[b] * psi.im[b]);
    }
  }
  return total;
}

// Adds weight * dPhi(x)/d(ry, rz) to grad_ry / grad_rz ([depth, n] each).
void readout_gradient(const Circuit& circuit, double x, bool amplitude, double weight, double* grad_ry,
                      double* grad_rz) {
  const int n = circuit.n_qubits;
  State psi = simulate(circuit, x);
  // dPhi = Re <lambda| dpsi>: lambda = 2 O psi for <O> = sum_k <Z_k>, the vector sum_{k<n} |k> for amplitudes.
  State lambda(static_cast<int64_t>(psi.re.size()));
  if (amplitude) {
    for (int64_t k = 0; k < n && k < static_cast<int64_t>(psi.re.size()); ++k) lambda.re[k] = 1.0;
  } else {
    for (int64_t b = 0; b < static_cast<int64_t>(psi.re.size()); ++b) {
      lambda.re[b] = 2.0 * z_weight(b, n) * psi.re[b];
      lambda.im[b] = 2.0 * z_weight(b, n) * psi.im[b];
    }
  }
  for (int l = circuit.depth - 1; l >= 0; --l) {
    for (int i = n - 2; i >= 0; --i) {  // CNOTs are their own inverses
      apply_cnot(psi, i, i + 1);
      apply_cnot(lambda, i, i + 1);
    }
    for (int i = n - 1; i >= 0; --i) {
      const double rz = circuit.rz[l * n + i], ry = circuit.ry[l * n + i] + x;
      grad_rz[l * n + i] += weight * generator_overlap(lambda, psi, i, false);
      apply_rz(psi, i, -rz);
      apply_rz(lambda, i, -rz);
      grad_ry[l * n + i] += weight * generator_overlap(lambda, psi, i, true);
      apply_ry(psi, i, -ry);
      apply_ry(lambda, i, -ry);
    }
  }
}

void check_circuit_inputs(const at::Tensor& ry, const at::Tensor& rz, const at::Tensor& points) {
  TORCH_CHECK(ry.device().is_cpu() && rz.device().is_cpu() && points.device().is_cpu(),
              "circuit sampler: CPU tensors only");
  TORCH_CHECK(ry.dim() == 3 && ry.sizes() == rz.sizes() && ry.is_contiguous() && rz.is_contiguous(),
              "circuit sampler: ry and rz must be contiguous [sets, depth, n_qubits]");
  TORCH_CHECK(points.dim() == 1 && points.is_contiguous(), "circuit sampler: points must be contiguous 1-D");
  TORCH_CHECK(ry.scalar_type() == at::kDouble && rz.scalar_type() == at::kDouble &&
                  points.scalar_type() == at::kDouble,
              "circuit sampler: float64 tensors only");
  TORCH_CHECK(ry.size(2) >= 1 && ry.size(2) <= 24, "circuit sampler: 1 to 24 qubits");
}

// Work items (angle set, point) per thread chunk: small circuits run on one thread.
int64_t sampler_grain(int64_t n_qubits, int64_t depth) {
  return std::max<int64_t>(1, 65536 / ((int64_t(1) << n_qubits) * depth * n_qubits));
}

at::Tensor circuit_samples(const at::Tensor& ry, const at::Tensor& rz, const at::Tensor& points, bool amplitude) {
  check_circuit_inputs(ry, rz, points);
  const int64_t sets = ry.size(0), n_points = points.size(0);
  const int depth = static_cast<int>(ry.size(1)), n = static_cast<int>(ry.size(2));
  at::Tensor out = at::empty({sets, n_points}, ry.options());
  const double *ry_p = ry.data_ptr<double>(), *rz_p = rz.data_ptr<double>(), *x = points.data_ptr<double>();
  double* y = out.data_ptr<double>();
  at::parallel_for(0, sets * n_points, sampler_grain(n, depth), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t set = item / n_points, m = item % n_points;
      Circuit circuit{ry_p + set * depth * n, rz_p + set * depth * n, depth, n};
      y[item] = readout_value(simulate(circuit, x[m]), n, amplitude);
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> circuit_samples_backward(const at::Tensor& ry, const at::Tensor& rz,
                                                            const at::Tensor& points, bool amplitude,
                                                            const at::Tensor& grad) {
  check_circuit_inputs(ry, rz, points);
  const int64_t sets = ry.size(0), n_points = points.size(0);
  const int depth = static_cast<int>(ry.size(1)), n = static_cast<int>(ry.size(2));
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == sets && grad.size(1) == n_points && grad.is_contiguous() &&
                  grad.scalar_type() == at::kDouble,
              "circuit sampler: grad must be contiguous float64 [sets, points]");
  const int64_t angles = int64_t(depth) * n;
  // One gradient row per work item, summed over points afterwards (no shared writes between threads).
  std::vector<double> partial(sets * n_points * 2 * angles, 0.0);
  const double *ry_p = ry.data_ptr<double>(), *rz_p = rz.data_ptr<double>(), *x = points.data_ptr<double>();
  const double* g = grad.data_ptr<double>();
  at::parallel_for(0, sets * n_points, sampler_grain(n, depth), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      if (g[item] == 0.0) continue;
      const int64_t set = item / n_points, m = item % n_points;
      Circuit circuit{ry_p + set * angles, rz_p + set * angles, depth, n};
      double* row = partial.data() + item * 2 * angles;
      readout_gradient(circuit, x[m], amplitude, g[item], row, row + angles);
    }
  });
  at::Tensor grad_ry = at::zeros(ry.sizes(), ry.options()), grad_rz = at::zeros(rz.sizes(), rz.options());
  double *gy = grad_ry.data_ptr<double>(), *gz = grad_rz.data_ptr<double>();
  for (int64_t set = 0; set < sets; ++set) {
    for (int64_t m = 0; m < n_points; ++m) {
      const double* row = partial.data() + (set * n_points + m) * 2 * angles;
      for (int64_t a = 0; a < angles; ++a) {
        gy[set * angles + a] += row[a];
        gz[set * angles + a] += row[angles + a];
      }
    }
  }
  return {grad_ry, grad_rz};
}

}  // namespace

// Indirection so that HFSP_NAMESPACE is macro-expanded before TORCH_LIBRARY_FRAGMENT pastes it into names.
#define HFSP_LIBRARY_FRAGMENT(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
HFSP_LIBRARY_FRAGMENT(HFSP_NAMESPACE, m) {
  m.def("circuit_samples(Tensor ry, Tensor rz, Tensor points, bool amplitude) -> Tensor", &circuit_samples);
  m.def(
      "circuit_samples_backward(Tensor ry, Tensor rz, Tensor points, bool amplitude, Tensor grad) "
      "-> (Tensor, Tensor)",
      &circuit_samples_backward);
}
