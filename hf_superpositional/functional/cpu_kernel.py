"""Build-on-first-use loader of the C++ CPU kernels of :mod:`.fourier` (kernel ``"cpp"``).

The source is ``_circuit_kernel.cpp`` beside this file: the fused circuit term (forward and backward, with
the softmax scale and causal mask) and the circuit sampler of ``fourier_coefficients``. It is compiled once
per machine (10-40 s) by ``torch.utils.cpp_extension.load`` into torch's extension cache
(``~/.cache/torch_extensions`` or ``$TORCH_EXTENSIONS_DIR``) under a name that hashes the source, the
compiler flags and the torch version, so an edited source, another instruction set or another torch gets
its own build; later processes just load it.

Flags: ``-O3 -ffp-contract=fast`` and, on x86, the vector instructions that torch itself detected at run time
(``torch.backends.cpu.get_cpu_capability()``: ``-mavx2 -mfma`` or ``-mavx512f``), never ``-march=native``: a
build cached on a shared disk must not carry instructions of the machine that happened to compile it.
Only minimal torch headers are included (not ``torch/extension.h``), which keeps the build about 5x faster,
and the ops are registered with ``TORCH_LIBRARY`` in a namespace named after the build.

If anything fails (no compiler, no ``ninja``, an unsupported platform), :func:`load_cpu_kernel` warns once
and returns ``None``; :mod:`.fourier` then uses its torch kernels.
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

__all__ = ["cpu_kernel_flags", "load_cpu_kernel"]

_SOURCE = Path(__file__).with_name("_circuit_kernel.cpp")
_STALE_LOCK_SECONDS = 600
_lock = threading.Lock()
_state: dict[str, object] = {}


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


def _build_name(source: str, flags: list[str]) -> str:
    digest = hashlib.sha256("\n".join([source, *flags, torch.__version__]).encode()).hexdigest()[:16]
    return f"hfsp_circuit_{digest}"


def _build(source: str, flags: list[str]):
    from torch.utils.cpp_extension import get_default_build_root, load

    name = _build_name(source, flags)
    build_directory = Path(get_default_build_root()) / name
    build_directory.mkdir(parents=True, exist_ok=True)
    lock = build_directory / "lock"
    try:  # torch waits forever on the lock of a process killed mid-build; no build takes 10 minutes
        if time.time() - lock.stat().st_mtime > _STALE_LOCK_SECONDS:
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    path = build_directory / "circuit_kernel.cpp"
    if not path.exists() or path.read_text() != source:
        # Atomic replace: another process may be compiling the same build concurrently (torch's own file
        # lock serialises the compilation itself).
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(source)
        os.replace(temporary, path)
    load(
        name=name,
        sources=[str(path)],
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


def load_cpu_kernel():
    """The compiled ops (``circuit_forward``/``_backward``, ``circuit_samples``/``_backward``); ``None`` if unavailable.

    Thread-safe and cached per process: the first call compiles or loads the extension, later calls return
    the same object. A failure is reported by one ``RuntimeWarning`` and remembered (no retries).

    Example:
        >>> ops = load_cpu_kernel()
        >>> ops is None or hasattr(ops, "circuit_forward")
        True
    """
    if "ops" in _state:
        return _state["ops"]
    with _lock:
        if "ops" not in _state:
            try:
                _state["ops"] = _build(_SOURCE.read_text(), cpu_kernel_flags())
            except Exception as error:  # noqa: BLE001 - any toolchain failure means "use the eager kernel"
                _state["ops"] = None
                warnings.warn(
                    f"could not build the C++ circuit kernel ({type(error).__name__}: {_summary(error)}); "
                    "hf_superpositional falls back to its torch kernels on CPU (slower). The fast kernel "
                    "needs a C++ compiler and ninja (`pip install ninja`).",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _state["ops"]
