"""The house's layers: imports run one way, from the face down to the core, and form no circle.

Layers, top to bottom (README, "Architecture"): the face (``dpd.cli``, ``dpd.api``, ``dpd.bench``) →
``dpd.agents`` and, beside it, ``dpd.kd`` → ``dpd.envs`` → the core (``CORE`` below). A module
may import its own layer and those below; ``dpd.kd`` uses only the core. Every module is placed
by name (a new one fails until it is), and the scripts of ``benchmarks/`` sit above them all.
"""

import ast
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).resolve().parents[1]
# Installed name -> folder (pyproject.toml's package-dir mapping).
FOLDERS = {"dpd.agents": ROOT / "agents", "dpd.envs": ROOT / "envs", "dpd": ROOT / "dpd"}
LAYERS = {"face": 3, "agents": 2, "kd": 2, "envs": 1, "core": 0}


def modules() -> Dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[0] in ("agents", "envs") and package == "dpd":
                continue  # not a folder of dpd/
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


# Every module's layer: the packages by their folder, the core's modules by name. A module none
# of these names has no layer, and test_every_module_has_a_layer fails until it is placed.
PACKAGE_LAYERS = {
    "dpd.cli": "face",
    "dpd.api": "face",
    "dpd.__main__": "face",
    "dpd.bench": "face",
    "dpd.agents": "agents",
    "dpd.kd": "kd",
    "dpd.envs": "envs",
}
CORE = (
    "dpd.config",
    "dpd.errors",
    "dpd.registry",
    "dpd.losses",
    "dpd.weighting",
    "dpd.fidelity",
    "dpd.rundir",
    "dpd.filetree",
    "dpd.processes",
    "dpd.zoo",
    "dpd.zoo_export",
    "dpd.pyexpr",
    "dpd.provenance",
)


def layer(module: str) -> str:
    if module == "dpd":
        return "face"  # the package's own names: ``dpd.Peers``, ``dpd.Student`` (``dpd.api``)
    for prefix, name in [*PACKAGE_LAYERS.items(), *((core, "core") for core in CORE)]:
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "unplaced"


def imports(path: Path, known: Set[str], top_level_only: bool) -> Set[str]:
    """The project modules ``path`` imports (``from a.b import c`` is a.b.c where that is a
    module); with ``top_level_only``, only imports that run when the module loads."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def test_every_import_runs_down_the_layers():
    known = modules()
    upward = []
    for module, path in known.items():
        for imported in imports(path, set(known), top_level_only=False):
            ours, theirs = layer(module), layer(imported)
            sideways = {ours, theirs} == {"agents", "kd"}  # beside each other: neither imports the other
            if LAYERS[theirs] > LAYERS[ours] or sideways or (ours == "kd" and theirs == "envs"):
                upward.append(f"{module} ({ours}) imports {imported} ({theirs})")
    assert upward == []


def test_modules_import_each_other_in_no_circle():
    """Loading a module never needs a module that needs it (a package's ``__init__`` that hands
    its modules' names on is not part of a circle: Python loads it first)."""
    known = modules()
    graph = {
        module: {m for m in imports(path, set(known), top_level_only=True) if not known[m].name == "__init__.py"}
        for module, path in known.items()
    }
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module: str, path: list) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                circles.append(" -> ".join(path[path.index(imported) :] + [imported]) if imported in path else imported)
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_every_module_has_a_layer():
    assert [module for module in modules() if layer(module) == "unplaced"] == []


def test_benchmarks_use_dpd_from_above_and_dpd_never_imports_them():
    """The scripts under benchmarks/ are users of dpd: they import modules that exist, and no
    module of dpd imports them."""
    known = modules()
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dpd"):
                assert node.module in known, f"{script.name} imports {node.module}, which is no module of dpd"
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(name.split(".")[0] == "benchmarks" for name in names), module


def test_the_layer_map_knows_every_folder():
    known = modules()
    assert {"dpd.agents.peer_group", "dpd.envs.tiny", "dpd.bench.runner", "dpd.config"} <= set(known)
    assert layer("dpd.agents.peer_group") == "agents" and layer("dpd.cli") == "face" and layer("dpd.weighting") == "core"


def test_peers_and_students_take_their_distillation_steps_through_one_function():
    """One distillation path: ``distill_steps`` (dpd.agents.distillation) is where a peer's and a
    student's steps are taken, checked and logged; nothing else calls the single step."""
    callers = {
        path.name: path.read_text().count("distill_steps(")
        for path in (ROOT / "agents").glob("*.py")
        if path.name != "distillation.py"
    }
    assert callers["peer.py"] >= 1 and callers["teacher_student.py"] >= 1
    single = [
        path.name
        for path in (ROOT / "agents").glob("*.py")
        if "distill_step(" in path.read_text().replace("def distill_step(", "")
    ]
    assert single == ["distillation.py"]


def test_the_trainer_drives_a_protocol_and_nothing_else():
    """``Trainer`` knows the agent it trains only as ``TrainableAgent``: it imports neither kind."""
    trained = imports(ROOT / "agents" / "trainer.py", set(modules()), top_level_only=False)
    assert not trained & {"dpd.agents.teacher_student", "dpd.agents.peer_group"}
    assert "isinstance(self.group" not in (ROOT / "agents" / "trainer.py").read_text()
