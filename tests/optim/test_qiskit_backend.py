"""The Qiskit / Qiskit Aer evaluation of sin(pi * theta) (optim/qiskit_backend.py) and SuperpositionalAdamW's qiskit backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_superpositional.optim import SuperpositionalAdamW

pytest.importorskip("qiskit")

from hf_superpositional.optim.qiskit_backend import QiskitSinPi

BACKENDS = ["qiskit", "aer"]


def estimator_class(backend: str):
    if backend == "qiskit":
        from qiskit.primitives import StatevectorEstimator

        return StatevectorEstimator
    pytest.importorskip("qiskit_aer")
    from qiskit_aer.primitives import EstimatorV2

    return EstimatorV2


@pytest.fixture
def count_runs(monkeypatch):
    """Wrap the estimator class's ``run`` and count calls."""

    def install(backend: str) -> list[int]:
        cls = estimator_class(backend)
        calls = [0]
        original = cls.run

        def counting_run(self, *args, **kwargs):
            calls[0] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "run", counting_run)
        return calls

    return install


@pytest.mark.parametrize("backend", BACKENDS)
def test_sin_pi_matches_numpy(backend, count_runs):
    calls = count_runs(backend)
    rng = np.random.default_rng(0)
    thetas = [rng.normal(size=k) for k in (4, 3, 1, 9, 5)]
    widths = [4, 4, 4, 1, 2]  # padded rows, a single-qubit batch, rows split across circuits
    out = QiskitSinPi(backend)([(torch.tensor(t), w) for t, w in zip(thetas, widths, strict=True)])
    for t, o in zip(thetas, out, strict=True):
        assert o.dtype == torch.float64 and o.shape == (t.size,)
        np.testing.assert_allclose(o.numpy(), np.sin(np.pi * t), rtol=0, atol=1e-10)
    assert calls[0] == 1


def test_qubit_order_is_little_endian():
    """Qubit i must carry theta_i: compare <X_i> with Qiskit's Statevector of the same product state."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Pauli, Statevector

    theta = np.array([0.1, 0.5, -0.3])
    qc = QuantumCircuit(3)
    for i, t in enumerate(theta):
        qc.ry(np.pi * t, i)
    state = Statevector(qc)
    # Pauli labels are little-endian: qubit i is character n-1-i
    expected = [state.expectation_value(Pauli("I" * (2 - i) + "X" + "I" * i)).real for i in range(3)]
    out = QiskitSinPi("qiskit")([(torch.tensor(theta), 3)])[0]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def test_invalid_backend():
    with pytest.raises(ValueError, match="simulator"):
        QiskitSinPi("ibm_brisbane")


def tiny_model_params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return list(model.parameters())


@pytest.mark.parametrize("path", [{"foreach": False}, {"fused": True}], ids=["loop", "fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_backend_matches_analytic_one_call_per_step(backend, path, count_runs):
    calls = count_runs(backend)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    trajectories = {}
    for name in ("analytic", backend):
        params = tiny_model_params()
        # several groups (different n_qubits, modes, one scope="all") still make one call per step
        groups = [
            {"params": params[:2], "n_qubits": 4, "mode": "update"},
            {"params": params[2:3], "n_qubits": 2, "mode": "moment"},
            {"params": params[3:], "scope": "all"},
        ]
        if name != "analytic":
            with pytest.warns(UserWarning, match="slow"):
                opt = SuperpositionalAdamW(
                    groups, lr=0.05, quantum_weight=0.7, perturbation_backend=name, **path
                )
        else:
            opt = SuperpositionalAdamW(groups, lr=0.05, quantum_weight=0.7, **path)

        def model(inp, p=params):
            return torch.tanh(inp @ p[0].T + p[1]) @ p[2].T + p[3]

        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        trajectories[name] = [p.detach().clone() for p in params]
    assert calls[0] == 3
    for a, b in zip(trajectories["analytic"], trajectories[backend], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
