"""Tensors, gradient schedules, a runner and the NumPy re-derivation shared by the optimizer tests."""

from __future__ import annotations

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
