"""Tensors, gradient schedules, a runner and the NumPy re-derivation shared by the optimizer tests."""

from __future__ import annotations

import numpy as np
import torch

# our flags -> the torch AdamW flags of the matching implementation
PATHS = {
    "loop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
}


MODES = ("update", "moment")


# --------------------------------------------------------------------------------------------------
# fixtures: a few parameters of varied shapes and a gradient schedule
# --------------------------------------------------------------------------------------------------
def make_tensors(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(6, 5, generator=gen),  # matrix
        torch.randn(7, generator=gen),  # vector
        torch.randn(1, generator=gen),  # scalar-ish, fewer elements than n_qubits
        torch.randn(2, 3, 4, generator=gen),  # 3-D
        torch.randn(4, 3, generator=gen).t(),  # non-contiguous (transposed) leaf
        torch.randn(3, 3, generator=gen),  # gets no gradient on odd steps
    ]


def clone_params(tensors: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    # clone(preserve_format) keeps the transposed layout of the non-contiguous one
    return [torch.nn.Parameter(t.clone(memory_format=torch.preserve_format)) for t in tensors]


def grad_schedule(
    tensors: list[torch.Tensor], steps: int, seed: int = 1, skip_last_on_odd_steps: bool = True
) -> list[list[torch.Tensor | None]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        row = []
        for i, t in enumerate(tensors):
            if t.is_contiguous():
                g = torch.randn(t.shape, generator=gen)
            else:  # same transposed layout as the parameter
                g = torch.randn(tuple(reversed(t.shape)), generator=gen).t()
            skip = skip_last_on_odd_steps and i == len(tensors) - 1 and step % 2 == 1
            row.append(None if skip else g)
        out.append(row)
    return out


def run(optimizer, params, schedule) -> None:
    for row in schedule:
        for p, g in zip(params, row, strict=True):
            p.grad = None if g is None else g.clone(memory_format=torch.preserve_format)
        optimizer.step()


def max_diff(a, b) -> float:
    return max(
        (x.detach().double() - y.detach().double()).abs().max().item() for x, y in zip(a, b, strict=True)
    )


# --------------------------------------------------------------------------------------------------
# torch's own AdamW configurations (torch/testing/_internal/common_optimizers.py, optim_inputs_func_adam,
# torch 2.13), as keyword arguments for both optimizers. torch's AdamW defaults to weight_decay=0.01 and
# ours to 0.0 (SPEC 1.6), so the torch "default" row spells its weight decay out.
# --------------------------------------------------------------------------------------------------
TORCH_CONFIGS = {
    "default": {"weight_decay": 0.01},
    "non-default lr": {"lr": 0.01, "weight_decay": 0.01},
    "nonzero weight_decay": {"weight_decay": 0.1},
    "maximize": {"weight_decay": 0.1, "maximize": True},
    "amsgrad": {"weight_decay": 0.1, "amsgrad": True},
}
# torch's CUDA-only rows (capturable, tensor lr / betas with capturable and amsgrad) run here with the
# options torch allows on CPU: the tensors without capturable, capturable with fused (or compiled).
TENSOR_CONFIGS = {
    "Tensor lr, amsgrad": {"lr": torch.tensor(0.001), "amsgrad": True, "weight_decay": 0.01},
    "Tensor lr, Tensor betas, amsgrad": {
        "lr": torch.tensor(0.001),
        "betas": (torch.tensor([[[0.9]]]), torch.tensor([[0.99]])),
        "amsgrad": True,
        "weight_decay": 0.01,
    },
    "Tensor lr, Tensor betas": {
        "lr": torch.tensor(0.001),
        "betas": (torch.tensor(0.9), torch.tensor(0.99)),
        "weight_decay": 0.01,
    },
}


def fresh(config: dict) -> dict:
    """A copy of a config with new tensors (schedulers and loads write into a tensor lr in place)."""
    out = dict(config)
    if isinstance(out.get("lr"), torch.Tensor):
        out["lr"] = out["lr"].clone()
    if "betas" in out:
        out["betas"] = tuple(b.clone() if isinstance(b, torch.Tensor) else b for b in out["betas"])
    return out


# --------------------------------------------------------------------------------------------------
# Independent NumPy float64 re-derivation of SPEC section 1 (rules 1-6 and 11)
# --------------------------------------------------------------------------------------------------
OPTION_DEFAULTS = {
    "lr": 1e-3,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.0,
    "quantum_weight": 0.1,
    "n_qubits": 4,
    "mode": "update",
    "scope": "first_n",
    "amsgrad": False,
    "maximize": False,
}


def as_real_array(t: torch.Tensor) -> np.ndarray:
    """float64 NumPy copy in logical (row-major) order; a complex tensor as its (..., 2) real view."""
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t.resolve_conj())
    return t.double().numpy().copy()


def numpy_reference(tensors, schedule, hypers_per_param):
    """SPEC 1 in float64, one parameter at a time. ``hypers_per_param[i]`` holds that param's group
    (missing keys take :data:`OPTION_DEFAULTS`). Complex tensors are handled on their real view, where
    ``first_n`` counts real components (rule 11). Returns the parameters (real views for complex ones)."""
    params = [as_real_array(t) for t in tensors]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    v_max = [np.zeros_like(p) for p in params]
    t_count = [0] * len(params)
    for row in schedule:
        for i, g_t in enumerate(row):
            if g_t is None:
                continue
            h = {**OPTION_DEFAULTS, **hypers_per_param[i]}
            lr = float(h["lr"])
            b1, b2 = (float(b) for b in h["betas"])
            qw = h["quantum_weight"]
            g = as_real_array(g_t)
            if h["maximize"]:
                g = -g  # before Q is formed
            p0 = params[i].copy()
            if h["scope"] == "all":
                mask = np.ones(p0.size)
            else:
                mask = (np.arange(p0.size) < h["n_qubits"]).astype(float)  # row-major flat index < n
            q = mask.reshape(p0.shape) * np.sin(np.pi * p0) * g
            t_count[i] += 1
            t = t_count[i]
            p = p0 * (1 - lr * h["weight_decay"])
            g_moments = g + qw * q if h["mode"] == "moment" else g
            m[i] = b1 * m[i] + (1 - b1) * g_moments
            v[i] = b2 * v[i] + (1 - b2) * g_moments * g_moments
            v_max[i] = np.maximum(v_max[i], v[i])
            second = v_max[i] if h["amsgrad"] else v[i]  # amsgrad changes the denominator only
            step = (m[i] / (1 - b1**t)) / (np.sqrt(second / (1 - b2**t)) + h["eps"])
            if h["mode"] == "update":
                step = step + qw * q
            params[i] = p - lr * step
    return params


def assert_matches_numpy(params, expected, atol: float) -> None:
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(as_real_array(p), e, rtol=0, atol=atol)
