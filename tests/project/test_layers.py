"""The package's layers (docs/ARCHITECTURE.md): every import inside dpcdvae/, function-local ones included, goes to
the same or a lower layer, and the module import graph has no cycles. The folders are the layers (utils/,
structures/, data/ ... notebooks/, cli/); the package root holds only the facade, the version, the config and the
trainer."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "dpcdvae"

#: module (dotted, without the "dpcdvae." prefix) or folder (package) prefix -> layer; the longest matching prefix
#: wins. Keep in sync with the table in docs/ARCHITECTURE.md.
LAYERS = {
    "": 8,  # the root package: the public facade (load_pretrained), imported by nothing inside
    "_version": 0, "utils": 0,
    "structures": 1,
    "data": 2, "nets": 2, "diffusion": 2, "config": 2,
    "models": 3,
    "eval": 4,
    "io": 5, "train": 5, "viz": 5,
    "workflows": 6,
    "notebooks": 7, "cli": 7,
}
NAMES = {8: "the package facade", 0: "foundation", 1: "structures", 2: "data / nets / diffusion", 3: "models", 4: "metrics (eval)",
         5: "training, writers, pictures", 6: "workflows", 7: "command line and notebooks"}


def layer_of(mod: str) -> int:
    if mod == "":
        return LAYERS[""]
    best = max((p for p in LAYERS if p and (mod == p or mod.startswith(p + "."))), key=len)
    return LAYERS[best]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(mod: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``mod`` imports (top-level or inside functions), as dotted names without the prefix."""
    parts = [p for p in mod.split(".") if p]
    pkg_parts = parts if path.name == "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[:len(pkg_parts) - (node.level - 1)] if node.level > 1 else list(pkg_parts)
                target = ".".join([*base, *(node.module.split(".") if node.module else [])]).strip(".")
            elif node.module and (node.module == "dpcdvae" or node.module.startswith("dpcdvae.")):
                target = node.module[len("dpcdvae."):] if node.module != "dpcdvae" else ""
            else:
                continue
            for alias in node.names:  # "from . import x" may name a module
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dpcdvae."):
                    found.add(alias.name[len("dpcdvae."):])
    return {m for m in found if m != mod and m in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items()}


def test_every_module_has_a_layer(graph):
    top = {m.split(".")[0] for m in graph if m}
    assert top <= set(LAYERS), f"modules without a layer in LAYERS (and ARCHITECTURE.md): {sorted(top - set(LAYERS))}"


#: the modules the package root keeps (everything else lives in a folder that says its layer)
ROOT_MODULES = {"", "_version", "config", "train"}


def test_the_root_keeps_only_the_facade_config_and_trainer(graph):
    root = {m for m in graph if "." not in m and not (PKG / m / "__init__.py").is_file()}
    assert root <= ROOT_MODULES, f"modules at the package root: {sorted(root - ROOT_MODULES)}; put them in a layer's folder"


def test_no_upward_imports(graph):
    bad = [f"dpcdvae.{m} ({NAMES[layer_of(m)]}) imports dpcdvae.{t} ({NAMES[layer_of(t)]})"
           for m, targets in graph.items() for t in targets
           if t and layer_of(t) > layer_of(m)]
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles(graph):
    # package __init__ files re-export their submodules; an edge into a package is an edge into its __init__
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t == m or m.startswith(t + ".") or not t:  # a module importing its own package's __init__ / the root
                continue
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """The layer check is not vacuous: a low module importing the command line is reported."""
    fake = tmp_path / "validity.py"
    fake.write_text("from ..cli import main\n\ndef f():\n    from ..workflows import reconstruct_split\n")
    got = _imports("structures.validity", fake, {"cli", "workflows", "structures.validity"})
    assert got == {"cli", "workflows"}
    assert all(layer_of(t) > layer_of("structures.validity") for t in got)
