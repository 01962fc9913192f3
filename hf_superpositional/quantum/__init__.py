"""The circuit tier: the attention circuit simulated in torch and in Qiskit, its exact Fourier compilation,
and the kernels that add ``gate * Phi`` to attention scores. torch only (Qiskit where a function says so);
nothing here imports a Hugging Face library.

- :mod:`.simulation`: the batched torch statevector simulation (Qiskit's conventions);
- :mod:`.qiskit`: the same circuit as a ``qiskit.QuantumCircuit``, evaluated by Qiskit or Qiskit Aer;
- :mod:`.series`: trigonometric polynomials, the form the readout takes;
- :mod:`.fourier`: the exact compilation of the circuit into such a polynomial;
- :mod:`.ops`: the circuit term over attention scores as autograd operations;
- :mod:`.masks`: the causal rule and how masks are applied;
- :mod:`.kernels`: the implementations (C++, ``torch.compile``, eager; FlexAttention and Triton).
"""

from .fourier import fourier_coefficients
from .kernels import circuit_kernel, get_circuit_kernel, set_circuit_kernel
from .ops import add_circuit_term, circuit_attention_probs, circuit_softmax

__all__ = [
    "add_circuit_term",
    "circuit_attention_probs",
    "circuit_kernel",
    "circuit_softmax",
    "fourier_coefficients",
    "get_circuit_kernel",
    "set_circuit_kernel",
]
