"""The ``"cpp"`` circuit kernel: fused, vectorised, multi-threaded C++ on CPU, built on first use.

The sources are ``csrc/*.cpp`` beside this file: the circuit term (forward and backward, with the softmax
scale and causal mask; ``circuit_term.cpp``), the circuit sampler of ``fourier_coefficients``
(``statevector.cpp``) and the fused flash-style quantum attention (``flash_attention.cpp``, see
:mod:`.flash`), with the SIMD vectors, sin/cos and exp they share (``simd.h``), compiled into one
extension. It is built once per machine (10-60 s) by ``torch.utils.cpp_extension.load`` into torch's
extension cache (``~/.cache/torch_extensions`` or ``$TORCH_EXTENSIONS_DIR``) under a name that hashes the
sources and headers, the compiler flags and the torch version, so an edited source, another instruction set
or another torch gets its own build; later processes just load it.

Flags: ``-O3 -ffp-contract=fast`` and, on x86, the vector instructions that torch itself detected at run time
(``torch.backends.cpu.get_cpu_capability()``: ``-mavx2 -mfma`` or ``-mavx512f``), never ``-march=native``: a
build cached on a shared disk must not carry instructions of the machine that happened to compile it.
Only minimal torch headers are included (not ``torch/extension.h``), which keeps the build about 5x faster,
and the ops are registered with ``TORCH_LIBRARY`` in a namespace named after the build.

If anything fails (no compiler, no ``ninja``, an unsupported platform), :func:`load_cpu_extension` warns
once and returns ``None``; the kernel registry then runs the ``"eager"`` kernel on CPU.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
import warnings
from pathlib import Path

import torch

__all__ = ["backward", "cpu_kernel_flags", "forward", "load_cpu_extension", "runs_on", "sample"]

SOURCE_DIR = Path(__file__).with_name("csrc")
_STALE_LOCK_SECONDS = 600


def cpu_kernel_flags() -> list[str]:
    """Compiler flags for this machine: optimisation, OpenMP if torch uses it, and the vector ISA torch detected.

    Example:
        >>> "-O3" in cpu_kernel_flags()
        True
    """
    flags = ["-O3", "-ffp-contract=fast", "-fno-math-errno"]
    # at::parallel_for is header-only over OpenMP: without -fopenmp it would silently run on one thread.
    if "OpenMP" in torch.__config__.parallel_info() and platform.system() == "Linux":
        flags.append("-fopenmp")
    if platform.machine().lower() in ("x86_64", "amd64"):
        capability = torch.backends.cpu.get_cpu_capability()
        if capability in ("AVX2", "AVX512"):
            flags += ["-mavx2", "-mfma"]
        if capability == "AVX512":
            flags += ["-mavx512f"]
    return flags


def _build_name(sources: dict[str, str], flags: list[str]) -> str:
    parts = [f"{name}\n{text}" for name, text in sorted(sources.items())]
    digest = hashlib.sha256("\n".join([*parts, *flags, torch.__version__]).encode()).hexdigest()[:16]
    return f"hfsp_circuit_{digest}"


def _build(sources: dict[str, str], flags: list[str]):
    from torch.utils.cpp_extension import get_default_build_root, load

    name = _build_name(sources, flags)
    build_directory = Path(get_default_build_root()) / name
    build_directory.mkdir(parents=True, exist_ok=True)
    lock = build_directory / "lock"
    try:  # torch waits forever on the lock of a process killed mid-build; no build takes 10 minutes
        if time.time() - lock.stat().st_mtime > _STALE_LOCK_SECONDS:
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    paths = []
    for file_name, text in sorted(sources.items()):
        path = build_directory / file_name
        if not path.exists() or path.read_text() != text:
            # Atomic replace: another process may be compiling the same build concurrently (torch's own
            # file lock serialises the compilation itself).
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
        if path.suffix == ".cpp":  # headers sit beside the sources they are included from
            paths.append(str(path))
    load(
        name=name,
        sources=paths,
        extra_cflags=[*flags, f"-DHFSP_NAMESPACE={name}"],
        extra_ldflags=["-fopenmp"] if "-fopenmp" in flags else [],
        build_directory=str(build_directory),
        is_python_module=False,
        verbose=False,
    )
    return getattr(torch.ops, name)


def _summary(error: Exception) -> str:
    """The compiler's first error line if the message holds a build log, else the message's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and "Error building extension" not in line]
    return (errors or lines or [""])[0 if errors else -1]


class _Extension:
    """The built ops, made on first use (thread-safe); ``None`` after a failed build (warned once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded = False
        self.ops = None

    def load(self):
        if self.loaded:
            return self.ops
        with self.lock:
            if not self.loaded:
                try:
                    sources = {
                        path.name: path.read_text() for pattern in ("*.cpp", "*.h") for path in SOURCE_DIR.glob(pattern)
                    }
                    self.ops = _build(sources, cpu_kernel_flags())
                except Exception as error:  # noqa: BLE001 - any toolchain failure means "use the eager kernel"
                    self.ops = None
                    warnings.warn(
                        f"could not build the C++ circuit kernel ({type(error).__name__}: {_summary(error)}); "
                        "hf_superpositional falls back to its torch kernels on CPU (slower). The fast kernel "
                        "needs a C++ compiler and ninja (`pip install ninja`).",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                self.loaded = True
        return self.ops


_EXTENSION = _Extension()


def load_cpu_extension():
    """The compiled ops (``circuit_forward``/``_backward``, ``circuit_samples``/``_backward``, ``flash_forward``/
    ``_backward``); ``None`` if unavailable.

    Thread-safe and cached per process: the first call compiles or loads the extension, later calls return
    the same object. A failure is reported by one ``RuntimeWarning`` and remembered (no retries).

    Example:
        >>> ops = load_cpu_extension()
        >>> ops is None or hasattr(ops, "circuit_forward")
        True
    """
    return _EXTENSION.load()


def runs_on(device: torch.device) -> bool:
    """Whether the kernel can run on ``device``: a CPU, with the extension built."""
    return device.type == "cpu" and load_cpu_extension() is not None


def forward(scores, table, frequency: float, scale: float, query_len: int, causal: bool) -> torch.Tensor:
    """The fused forward: scale, term and causal mask in one pass that skips the masked scores entirely."""
    return load_cpu_extension().circuit_forward(
        scores.to(table.dtype).contiguous(), table, scale, frequency, query_len, causal
    )


def backward(
    grads, scores, derivative, frequency: float, scale: float, query_len: int, causal: bool,
    need_logits: bool, need_moments: bool, grad_is_ours: bool,
):  # fmt: skip
    """The fused backward (arguments as :func:`.eager.backward`); writes over ``grads`` when it may."""
    dtype = derivative.dtype
    in_place = grad_is_ours and grads.dtype == dtype and grads.is_contiguous()
    grads, scores = grads.to(dtype).contiguous(), scores.to(dtype).contiguous()
    return load_cpu_extension().circuit_backward(
        grads, scores, derivative, scale, frequency, query_len, causal, need_logits, need_moments, in_place
    )


class _SampledReadout(torch.autograd.Function):
    """``Phi`` at the sample points by the C++ simulator (float64); backward by its adjoint method."""

    @staticmethod
    def forward(ctx, ry, rz, points, amplitude, dtype):
        shape = ry.shape
        sets_ry = ry.detach().reshape(-1, *shape[-2:]).to(torch.float64).contiguous()
        sets_rz = rz.detach().reshape(-1, *shape[-2:]).to(torch.float64).contiguous()
        ctx.sets, ctx.points, ctx.amplitude = (sets_ry, sets_rz), points, amplitude
        ctx.dtypes, ctx.shape = (ry.dtype, rz.dtype), shape
        samples = load_cpu_extension().circuit_samples(sets_ry, sets_rz, points, amplitude)
        return samples.view(*shape[:-2], points.shape[0]).to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        sets_ry, sets_rz = ctx.sets
        grad = grad.reshape(-1, ctx.points.shape[0]).to(torch.float64).contiguous()
        grad_ry, grad_rz = load_cpu_extension().circuit_samples_backward(
            sets_ry, sets_rz, ctx.points, ctx.amplitude, grad
        )
        grad_ry = grad_ry.view(ctx.shape).to(ctx.dtypes[0])
        return grad_ry, grad_rz.view(ctx.shape).to(ctx.dtypes[1]), None, None, None


def sample(points: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor, readout: str, dtype: torch.dtype):
    """``Phi`` at ``points`` by the C++ statevector simulator in float64, with exact gradients by the adjoint
    method (first order: no double backward)."""
    return _SampledReadout.apply(ry, rz, points, readout == "amplitude", dtype)
