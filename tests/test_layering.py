"""The package's shape (ARCHITECTURE.md): tiers are folders, every import points down, no circles, no
private names across modules, and tests/ mirrors the package.

Read from the source with ``ast`` (nothing is imported), function-level imports included. The tiers, lowest
first; a module may import its own tier and the tiers below it, never above. ``optim/`` and ``quantum/``
share a tier but do not import each other: the optimizer and the circuit maths are independent.

    leaves          naming.py, _utils.py, profiling.py
    core            optim/ | quantum/          (torch only: no Hugging Face library)
    attention       attention/
    integrations    integrations/
    tasks           tasks/
    reproduction    reproduction/
    entry points    cli.py, __init__.py
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.subprocess_env import REPO

PACKAGE = REPO / "hf_superpositional"
TIERS = {
    "naming": 0, "_utils": 0, "profiling": 0,
    "optim": 1, "quantum": 1,
    "attention": 2,
    "integrations": 3,
    "tasks": 4,
    "reproduction": 5,
    "cli": 6, "__init__": 6,
}  # fmt: skip
SIBLINGS_APART = {("optim", "quantum"), ("quantum", "optim")}
HUGGING_FACE = ("transformers", "peft", "accelerate", "datasets", "evaluate", "trl", "huggingface_hub")
MAX_TOP_LEVEL, MAX_LINES = 6, 650


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Every Python file of the package that is importable as a module (evaluate's loader script, in a plain
# folder, is not).
MODULES = {
    module_name(path): path
    for path in PACKAGE.rglob("*.py")
    if all((parent / "__init__.py").exists() for parent in path.parents if parent.is_relative_to(PACKAGE))
}


def tier_of(module: str) -> tuple[str, int]:
    """``(tier folder or top-level module, rank)`` of a package module."""
    first = module.split(".")[1] if "." in module else "__init__"
    return first, TIERS[first]


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, str, int]]:
    """``(imported module, name, line)`` for every import in ``module``, function-level ones included."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                out.append((full if full in MODULES else source, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, "", node.lineno) for alias in node.names)
    return out


def package_edges() -> dict[str, set[str]]:
    edges = {module: set() for module in MODULES}
    for module in MODULES:
        for target, _, _ in imports(module):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                edges[module].add(target)
    return edges


def test_every_import_points_down():
    wrong = []
    for module, targets in package_edges().items():
        folder, rank = tier_of(module)
        for target in targets:
            target_folder, target_rank = tier_of(target)
            if target_rank > rank or (folder, target_folder) in SIBLINGS_APART:
                wrong.append(f"{module} (tier {folder}) imports {target} (tier {target_folder})")
    assert not wrong, "\n".join(wrong)


def test_no_circles():
    edges, index, low, stack, on_stack, circles = package_edges(), {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert not circles, circles


def test_the_core_tiers_import_no_hugging_face_library():
    offending = [
        f"{module} imports {target}"
        for module in MODULES
        if tier_of(module)[0] in ("optim", "quantum")
        for target, _, _ in imports(module)
        if target.split(".")[0] in HUGGING_FACE
    ]
    assert not offending, offending


def private_imports(path: Path, module: str | None) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = resolve(module, path.name == "__init__.py", node) if module else (node.module or "")
        if not source.startswith("hf_superpositional"):
            continue
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            # A package may import its own private module (hf_superpositional._utils from inside the package).
            if private and (module is None or f"{source}.{alias.name}" not in MODULES):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {source}.{alias.name}")
    return found


def test_no_private_name_is_imported_across_modules():
    found = [hit for module, path in MODULES.items() for hit in private_imports(path, module)]
    for folder in ("tests", "recipes"):
        found += [hit for path in (REPO / folder).rglob("*.py") for hit in private_imports(path, None)]
    assert not found, "\n".join(found)


def test_tiers_are_folders_and_modules_stay_small():
    top_level = [path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert len(top_level) <= MAX_TOP_LEVEL, top_level
    assert set(TIERS) >= {Path(name).stem for name in top_level} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    # Triton kernels are kernel sources; the C++ ones are not Python at all.
    too_long = {
        module: n
        for module, path in MODULES.items()
        if "triton" not in module and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, too_long


def expected_test_file(module: str) -> Path | None:
    """``tests/<folders>/test_<module>.py`` for a module with code; ``None`` for a package's face."""
    path = MODULES[module]
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines = any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body)
        if not defines and len(parts) > 1:
            return None  # a folder's __init__ that only hands names on
        parts[-1] = parts[-2] if len(parts) > 1 else "hf_superpositional"
    return REPO.joinpath("tests", *parts[:-1], f"test_{parts[-1].lstrip('_')}.py")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_its_test_file(module):
    expected = expected_test_file(module)
    if expected is None:
        pytest.skip(f"{module} only re-exports names")
    assert expected.is_file(), f"{module} has no test file {expected.relative_to(REPO)}"
