"""The ``sin(pi * theta)`` factor of Superpositional AdamW, evaluated by a Qiskit estimator.

For one qubit, ``RY(pi * theta)|0> = cos(pi*theta/2)|0> + sin(pi*theta/2)|1>`` has ``<X> = sin(pi * theta)``.
The selected parameters of a tensor are encoded in the n-qubit product state
``RY(pi * theta_{n-1}) ... RY(pi * theta_0) |0...0>`` (``theta_i`` on qubit ``i``), and qubit ``i``'s X
expectation gives the factor for parameter ``i``. Qiskit orders qubits little-endian: qubit 0 is the
rightmost character of a Pauli string, so ``X`` on qubit ``i`` of ``n`` is ``"I"*(n-1-i) + "X" + "I"*i``.

All rows of all tensors go to the estimator in ONE ``run`` call per optimizer step (one pub per circuit
width, parameter values broadcast against the ``n`` observables), statevector-exact (no shots).
Qiskit is imported lazily, so the analytic default never needs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._utils import require
from ..naming import QISKIT_SIMULATORS

__all__ = ["MAX_QUBITS_PER_CIRCUIT", "QiskitSinPi"]

# A product state of w qubits costs 2**w amplitudes per row; wider masks are split into rows this wide.
MAX_QUBITS_PER_CIRCUIT = 12


def _import_qiskit():
    # The analytic default computes the same sin(pi*theta) factor in torch and never needs Qiskit.
    return require("qiskit", "perturbation_backend='qiskit'", "qiskit")


def _make_estimator(simulator: str):
    qiskit = _import_qiskit()
    if simulator == "qiskit":
        return qiskit.primitives.StatevectorEstimator(default_precision=0.0)
    estimator = require("qiskit_aer.primitives", "perturbation_backend='aer'", "qiskit-aer").EstimatorV2
    # precision 0 makes Aer's EstimatorV2 return exact statevector expectation values (no sampling).
    return estimator(options={"default_precision": 0.0, "backend_options": {"method": "statevector"}})


class QiskitSinPi:
    """Batched ``sin(pi * theta)`` from Qiskit estimators, one ``run`` call per invocation.

    Args:
        simulator: ``"qiskit"`` (``qiskit.primitives.StatevectorEstimator``) or ``"aer"``
            (``qiskit_aer.primitives.EstimatorV2``, statevector method, exact).
        max_qubits: widest circuit built; longer rows are split (the factor is a product state, so
            splitting changes nothing but the cost).

    Example:
        >>> f = QiskitSinPi("qiskit")
        >>> out = f([(torch.tensor([0.5, 0.25]), 4)])
        >>> [round(v, 6) for v in out[0].tolist()]  # sin(pi/2), sin(pi/4)
        [1.0, 0.707107]
    """

    def __init__(self, simulator: str = "qiskit", max_qubits: int = MAX_QUBITS_PER_CIRCUIT) -> None:
        if simulator not in QISKIT_SIMULATORS:
            raise ValueError(f"simulator must be one of {QISKIT_SIMULATORS}, got {simulator!r}")
        if not isinstance(max_qubits, int) or max_qubits < 1:
            raise ValueError(f"max_qubits must be an int >= 1, got {max_qubits!r}")
        self.simulator = simulator
        self.max_qubits = max_qubits
        self.estimator = _make_estimator(simulator)
        self._circuits: dict[int, tuple[object, list[str]]] = {}

    def _circuit(self, width: int):
        """The width-qubit circuit RY(pi*theta_i) on qubit i, and the X_i observables (cached)."""
        if width not in self._circuits:
            qiskit = _import_qiskit()
            theta = qiskit.circuit.ParameterVector("theta", width)
            qc = qiskit.QuantumCircuit(width)
            for i in range(width):
                qc.ry(math.pi * theta[i], i)
            # Little-endian: qubit i is character n-1-i of the Pauli string.
            observables = ["I" * (width - 1 - i) + "X" + "I" * i for i in range(width)]
            self._circuits[width] = (qc, observables)
        return self._circuits[width]

    def __call__(self, requests: Sequence[tuple[Tensor, int]]) -> list[Tensor]:
        """Evaluate ``sin(pi * theta)`` for every request with a single estimator ``run`` call.

        Args:
            requests: ``(theta, width)`` pairs: a 1-D tensor of angles (the selected parameter values)
                and the number of qubits of the product state that encodes them (``n_qubits`` for
                ``scope="first_n"``, 1 for ``scope="all"``). A tensor with fewer values than ``width``
                is padded with ``theta=0`` qubits; one with more is split into rows of ``width``.

        Returns:
            One tensor per request, same shape, dtype and device as its ``theta``.
        """
        rows_by_width: dict[int, list[np.ndarray]] = {}
        placement = []  # (width, first row, number of rows, count) per request
        for theta, width in requests:
            values = theta.detach().reshape(-1).to(device="cpu", dtype=torch.float64).numpy()
            w = max(1, min(int(width), self.max_qubits))
            n_rows = -(-values.size // w)
            padded = np.zeros(n_rows * w)
            padded[: values.size] = values
            rows = rows_by_width.setdefault(w, [])
            placement.append((w, len(rows), n_rows, values.size))
            rows.extend(padded.reshape(n_rows, w))
        if not rows_by_width:
            return []

        widths = sorted(rows_by_width)
        pubs = []
        for w in widths:
            qc, observables = self._circuit(w)
            # Parameter values shaped (rows, 1, w) broadcast against observables shaped (w,):
            # the pub's result is (rows, w) = <X_i> of each row's product state.
            values = np.asarray(rows_by_width[w]).reshape(-1, 1, w)
            pubs.append((qc, observables, values))
        result = self.estimator.run(pubs).result()
        evs = {w: np.asarray(result[k].data.evs).reshape(-1, w) for k, w in enumerate(widths)}

        out = []
        for (theta, _), (w, first, n_rows, count) in zip(requests, placement, strict=True):
            flat = evs[w][first : first + n_rows].reshape(-1)[:count]
            out.append(torch.as_tensor(flat, dtype=theta.dtype, device=theta.device).reshape(theta.shape))
        return out
