"""The attention circuit in Qiskit, and Qiskit / Qiskit Aer evaluation of its readout (SPEC sections 2-3).

This is the "run the actual circuit" side of the project: :func:`build_circuit` is the circuit that the
torch simulation in :mod:`hf_superpositional.quantum.simulation` must reproduce, :func:`qiskit_readout`
evaluates ``Phi`` with Qiskit's ``Statevector`` or with Qiskit Aer, and :func:`aer_fourier_coefficients`
computes the Fourier coefficients used by the attention layer from Aer runs, with gradients by the
parameter-shift rule (``circuit_backend="aer"``).

Qiskit is imported inside the functions, so the rest of the package works without it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._utils import require
from ..naming import QISKIT_SIMULATORS
from .series import fourier_sampling, readout_frequency
from .simulation import check_angles, check_readout

__all__ = [
    "build_circuit",
    "readout_observable",
    "qiskit_readout",
    "aer_fourier_coefficients",
    "parameter_shift",
]


def _import_qiskit():
    return require("qiskit", "Running the attention circuit in Qiskit", "'qiskit>=2.0'")


def _import_aer():
    _import_qiskit()
    return require("qiskit_aer", "The Aer simulator", "'qiskit-aer>=0.17'").AerSimulator


def _angle_list(name: str, values, depth: int, n_qubits: int) -> list[float]:
    array = np.asarray(
        values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64
    )
    if (
        array.size != depth * n_qubits
        or array.ndim not in (1, 2)
        or (array.ndim == 2 and array.shape != (depth, n_qubits))
    ):
        raise ValueError(
            f"{name} must have shape [depth, n_qubits] = [{depth}, {n_qubits}] or [{depth * n_qubits}], got {array.shape}"
        )
    return array.reshape(-1).tolist()


def build_circuit(n_qubits: int = 4, depth: int = 2, *, x=None, ry=None, rz=None):
    """The attention circuit as a ``qiskit.QuantumCircuit``.

    ``H`` on every qubit, then per layer ``l``: ``RY(ry[l, i] + x)`` and ``RZ(rz[l, i])`` on each qubit ``i``,
    then ``CNOT(i -> i+1)`` for ``i = 0 .. n-2``.

    Args:
        n_qubits: number of qubits, >= 1.
        depth: number of layers, >= 1.
        x: input value; ``None`` leaves it as the ``Parameter`` ``"x"``.
        ry: RY angles ``[depth, n_qubits]`` (or flat, index ``l * n_qubits + i``); ``None`` leaves them as the
            ``ParameterVector`` ``"ry"`` of length ``depth * n_qubits``.
        rz: RZ angles, likewise (``ParameterVector`` ``"rz"``).

    Returns:
        ``qiskit.QuantumCircuit`` (parameterised where values were not given).

    Example:
        >>> qc = build_circuit(2, 1)
        >>> sorted(p.name for p in qc.parameters)
        ['ry[0]', 'ry[1]', 'rz[0]', 'rz[1]', 'x']
    """
    qiskit = _import_qiskit()
    from qiskit.circuit import Parameter, ParameterVector

    if isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < 1:
        raise ValueError(f"n_qubits must be an integer >= 1, got {n_qubits!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    x_value = Parameter("x") if x is None else float(x)
    ry_values = (
        ParameterVector("ry", depth * n_qubits) if ry is None else _angle_list("ry", ry, depth, n_qubits)
    )
    rz_values = (
        ParameterVector("rz", depth * n_qubits) if rz is None else _angle_list("rz", rz, depth, n_qubits)
    )

    circuit = qiskit.QuantumCircuit(n_qubits)
    circuit.h(range(n_qubits))
    for layer in range(depth):
        for qubit in range(n_qubits):
            index = layer * n_qubits + qubit
            circuit.ry(ry_values[index] + x_value, qubit)
            circuit.rz(rz_values[index], qubit)
        for qubit in range(n_qubits - 1):
            circuit.cx(qubit, qubit + 1)
    return circuit


def readout_observable(n_qubits: int, readout: str = "expval_z"):
    """The observable whose expectation is ``Phi``: ``sum_k Z_k`` for ``readout="expval_z"``.

    The ``"amplitude"`` readout (``sum_k Re <k|psi>``) is not the expectation of any observable on the
    circuit's state, so it has none: a ``ValueError`` says so.

    Example:
        >>> readout_observable(2).paulis.to_labels()
        ['IZ', 'ZI']
    """
    _import_qiskit()
    from qiskit.quantum_info import SparsePauliOp

    check_readout(readout)
    if isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < 1:
        raise ValueError(f"n_qubits must be an integer >= 1, got {n_qubits!r}")
    if readout != "expval_z":
        raise ValueError(
            f"readout={readout!r} is an amplitude, not an expectation value: it has no observable; "
            "use qiskit_readout(..., readout='amplitude') to evaluate it from the statevector"
        )
    return SparsePauliOp.from_sparse_list([("Z", [k], 1.0) for k in range(n_qubits)], num_qubits=n_qubits)


def _phi_from_amplitudes(amplitudes: np.ndarray, n_qubits: int) -> float:
    return float(np.real(amplitudes[:n_qubits]).sum())


def _aer_run(n_qubits, depth, readout, x_values, ry_rows, rz_rows, device="CPU"):
    """One Aer job: row ``i`` binds ``x_values[i]``, ``ry_rows[i]``, ``rz_rows[i]``; returns ``Phi`` per row."""
    AerSimulator = _import_aer()
    from qiskit import transpile
    from qiskit.circuit import Parameter

    circuit = build_circuit(n_qubits, depth)
    if readout == "expval_z":
        circuit.save_expectation_value(
            readout_observable(n_qubits, readout), list(range(n_qubits)), label="phi"
        )
    else:
        circuit.save_statevector(label="psi")
    simulator = AerSimulator(method="statevector", device=device)
    circuit = transpile(circuit, simulator)
    by_name = {p.name: p for p in circuit.parameters}
    binds: dict[Parameter, list[float]] = {by_name["x"]: [float(v) for v in x_values]}
    for prefix, rows in (("ry", ry_rows), ("rz", rz_rows)):
        for index in range(depth * n_qubits):
            binds[by_name[f"{prefix}[{index}]"]] = [float(v) for v in rows[:, index]]
    result = simulator.run(circuit, parameter_binds=[binds]).result()
    if readout == "expval_z":
        return np.array([float(np.real(result.data(i)["phi"])) for i in range(len(x_values))])
    return np.array(
        [_phi_from_amplitudes(np.asarray(result.data(i)["psi"]), n_qubits) for i in range(len(x_values))]
    )


def qiskit_readout(x_values, ry, rz, readout: str = "expval_z", simulator: str = "qiskit") -> np.ndarray:
    """``Phi(x)`` of the circuit evaluated by Qiskit, one value per entry of ``x_values``.

    Args:
        x_values: input values (any array-like; flattened).
        ry, rz: angles ``[depth, n_qubits]`` (tensors or arrays).
        readout: ``"expval_z"`` (``Statevector.expectation_value`` of :func:`readout_observable`) or
            ``"amplitude"`` (real parts of the statevector's first ``n`` amplitudes, summed).
        simulator: ``"qiskit"`` (``qiskit.quantum_info.Statevector``, one bound circuit per value) or
            ``"aer"`` (``AerSimulator(method="statevector")``, all values bound in one run).

    Returns:
        float64 array of ``Phi`` values, shape ``[len(x_values)]``.

    Example:
        >>> import numpy as np
        >>> qiskit_readout([0.0, 1.0], np.zeros((1, 2)), np.zeros((1, 2))).shape
        (2,)
    """
    check_readout(readout)
    if simulator not in QISKIT_SIMULATORS:
        raise ValueError(f"simulator must be one of {QISKIT_SIMULATORS}, got {simulator!r}")
    ry_array = np.asarray(ry.detach().cpu() if isinstance(ry, torch.Tensor) else ry, dtype=np.float64)
    rz_array = np.asarray(rz.detach().cpu() if isinstance(rz, torch.Tensor) else rz, dtype=np.float64)
    check_angles(torch.from_numpy(ry_array), torch.from_numpy(rz_array))
    if ry_array.ndim != 2:
        raise ValueError(f"ry and rz must have shape [depth, n_qubits], got {ry_array.shape}")
    depth, n_qubits = ry_array.shape
    xs = np.asarray(
        x_values.detach().cpu() if isinstance(x_values, torch.Tensor) else x_values, dtype=np.float64
    ).reshape(-1)
    if simulator == "aer":
        rows = len(xs)
        flat_ry, flat_rz = (
            np.tile(ry_array.reshape(1, -1), (rows, 1)),
            np.tile(rz_array.reshape(1, -1), (rows, 1)),
        )
        return _aer_run(n_qubits, depth, readout, xs, flat_ry, flat_rz)

    _import_qiskit()
    from qiskit.quantum_info import Statevector

    template = build_circuit(n_qubits, depth, ry=ry_array, rz=rz_array)
    x_parameter = next(iter(template.parameters))
    observable = readout_observable(n_qubits) if readout == "expval_z" else None
    values = []
    for value in xs:
        state = Statevector(template.assign_parameters({x_parameter: float(value)}))
        if observable is not None:
            values.append(float(np.real(state.expectation_value(observable))))
        else:
            values.append(_phi_from_amplitudes(state.data, n_qubits))
    return np.array(values)


def parameter_shift(readout: str) -> tuple[float, float]:
    """``(shift, factor)`` with ``dPhi/dtheta = factor * (Phi(theta + shift) - Phi(theta - shift))``, exactly.

    Each angle enters exactly one rotation ``exp(-i theta P / 2)`` (``P`` a Pauli), so the state is
    ``cos(theta/2) A + sin(theta/2) B``: frequency 1/2 in ``theta``. An expectation value is quadratic in the
    state, hence a trigonometric polynomial of frequency 1: the usual rule ``shift = pi/2``, ``factor = 1/2``.
    The ``"amplitude"`` readout is linear in the state, frequency 1/2: the rule for frequency ``w``,
    ``shift = pi / (2w) = pi``, ``factor = w / (2 sin(w * shift)) = 1/4``, is exact there too (it equals
    ``Phi(theta + pi) / 2``, because ``Phi(theta - pi) = -Phi(theta + pi)``).

    Example:
        >>> parameter_shift("expval_z")
        (1.5707963267948966, 0.5)
    """
    if check_readout(readout) == "expval_z":
        return math.pi / 2, 0.5
    return math.pi, 0.25


class _AerCoefficients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ry, rz, readout, device):
        depth, n_qubits = ry.shape[-2], ry.shape[-1]
        degree = depth * n_qubits
        n_samples = 2 * degree + 1
        omega = readout_frequency(readout)
        batch = ry.shape[:-2]
        ry_rows = ry.detach().reshape(-1, degree).cpu().double().numpy()
        rz_rows = rz.detach().reshape(-1, degree).cpu().double().numpy()
        n_sets = ry_rows.shape[0]
        points, transform = fourier_sampling(degree)
        xs = points / omega
        # One Aer run for every angle set (head) and sample point.
        samples = _aer_run(
            n_qubits,
            depth,
            readout,
            np.tile(xs, n_sets),
            np.repeat(ry_rows, n_samples, axis=0),
            np.repeat(rz_rows, n_samples, axis=0),
            device,
        ).reshape(n_sets, n_samples)
        ctx.save_for_backward(ry, rz)
        ctx.readout, ctx.device = readout, device
        coefficients = samples @ transform  # [S, 2K+2]: the real DFT of the samples
        return torch.from_numpy(coefficients).to(ry.dtype).to(ry.device).reshape(*batch, 2, degree + 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_coefficients):
        ry, rz = ctx.saved_tensors
        readout, device = ctx.readout, ctx.device
        depth, n_qubits = ry.shape[-2], ry.shape[-1]
        degree = depth * n_qubits
        n_samples = 2 * degree + 1
        omega = readout_frequency(readout)
        ry_rows = ry.detach().reshape(-1, degree).cpu().double().numpy()
        rz_rows = rz.detach().reshape(-1, degree).cpu().double().numpy()
        n_sets = ry_rows.shape[0]
        shift, factor = parameter_shift(readout)
        points, transform = fourier_sampling(degree)
        xs = points / omega

        # Rows: for each angle set s, each of the 2K angles p, each sign, each sample point m.
        n_angles = 2 * degree
        shifts = np.zeros((n_angles, 2, 2 * degree))
        for p in range(n_angles):
            shifts[p, 0, p], shifts[p, 1, p] = shift, -shift
        base = np.concatenate((ry_rows, rz_rows), axis=1)  # [S, 2K]
        angles = base[:, None, None, None, :] + shifts[None, :, :, None, :]  # [S, 2K, 2, 1, 2K]
        angles = np.broadcast_to(angles, (n_sets, n_angles, 2, n_samples, 2 * degree)).reshape(-1, 2 * degree)
        x_rows = np.tile(xs, n_sets * n_angles * 2)
        phi = _aer_run(n_qubits, depth, readout, x_rows, angles[:, :degree], angles[:, degree:], device)
        phi = phi.reshape(n_sets, n_angles, 2, n_samples)
        d_samples = factor * (phi[:, :, 0] - phi[:, :, 1])  # dPhi(x_m)/d angle_p: [S, 2K, 2K+1]
        # coefficients = samples @ transform, so dL/dangle_p = sum_m (transform g)_m dPhi(x_m)/dangle_p.
        g = grad_coefficients.detach().reshape(n_sets, 2 * (degree + 1)).cpu().double().numpy()
        sample_weights = g @ transform.T  # [S, 2K+1]
        grad_angles = np.einsum("sm,spm->sp", sample_weights, d_samples)
        grad = torch.from_numpy(grad_angles).to(ry.dtype).to(ry.device)
        grad_ry = grad[:, :degree].reshape(ry.shape)
        grad_rz = grad[:, degree:].reshape(rz.shape)
        return grad_ry, grad_rz, None, None


def aer_fourier_coefficients(
    ry: torch.Tensor, rz: torch.Tensor, readout: str = "expval_z", *, device: str = "CPU"
) -> torch.Tensor:
    """Fourier coefficients of ``Phi`` computed by running the circuit on Qiskit Aer.

    The same contract as :func:`hf_superpositional.quantum.fourier.fourier_coefficients`, but ``Phi`` is
    sampled at the ``2K+1`` points by ``AerSimulator(method="statevector")`` (all angle sets and points in one
    batched run) and the gradients come from the parameter-shift rule (:func:`parameter_shift`), evaluated
    with Aer too: exact for both readouts, ``2 * (2K) * (2K+1)`` extra circuit runs per angle set.

    Args:
        ry, rz: angles ``[..., depth, n]`` (e.g. ``[heads, depth, n]``).
        readout: ``"expval_z"`` or ``"amplitude"``.
        device: Aer device, ``"CPU"`` or ``"GPU"`` (needs ``qiskit-aer-gpu``).

    Returns:
        ``[..., 2, K + 1]`` in ``ry``'s dtype and device.

    Example:
        >>> import torch
        >>> ry, rz = torch.zeros(1, 2, requires_grad=True), torch.zeros(1, 2)
        >>> aer_fourier_coefficients(ry, rz).shape
        torch.Size([2, 3])
    """
    check_angles(ry, rz)
    check_readout(readout)
    if device not in ("CPU", "GPU"):
        raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}")
    return _AerCoefficients.apply(ry, rz, readout, device)
