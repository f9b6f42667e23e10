"""The import layers of dml: every import runs down :data:`LAYERS`, and none runs in a circle.

Every ``import`` statement counts, wherever it stands: at module level, inside a function
(a late import hides a dependency, it does not remove it), and under ``TYPE_CHECKING`` (a
type-only import that ran up a layer would make the lower layer's meaning depend on the
higher one; a lower layer states what it needs as a Protocol instead). docs/architecture.md
explains the layers; this table is their one definition.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

#: From the top down. A module may import its own layer and the layers below it, never one
#: above. A module belongs to the longest name in the table that is it or contains it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # The `dml` command; the package root registers the config resolvers.
    ("dml", "dml.__main__", "dml.cli"),
    # What a user calls: `dml train|eval|embed|search|export|compare`, and MetricLearner,
    # the scikit-learn estimator, which composes and builds a run's config as they do.
    ("dml.commands", "dml.classic"),
    # The composition root: compose, check and build a run from its config.
    ("dml.config",),
    # Semi-supervised learning, built on the training layer's data module.
    ("dml.semi",),
    # The Lightning module, data module and trainer.
    ("dml.training",),
    # What a run leaves behind and shows: run-directory files, loggers, plots, compare.
    # One way below training: training logs through it, it never imports training.
    ("dml.reporting",),
    # The components a run is made of.
    (
        "dml.losses",
        "dml.miners",
        "dml.metrics",
        "dml.datasets",
        "dml.backbones",
        "dml.transforms",
        "dml.conf",
    ),
    # Shared by all: tuples, distances, errors, and the helpers every layer builds with.
    (
        "dml.tuples",
        "dml.distances",
        "dml.errors",
        "dml.instantiate",
        "dml.moved_targets",
        "dml.pml_lookup",
    ),
)

ROOT = Path(__file__).resolve().parents[1] / "dml"


class Import(NamedTuple):
    importer: str
    imported: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str) -> Iterator[Import]:
    """The package's own modules that ``name`` imports, each with its statement's line."""
    own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import mod`` imports the module; ``from mod import name`` the module.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names
            ]
        else:
            continue
        found = []
        for target in targets:
            if target != package and not target.startswith(package + "."):
                continue
            while target not in modules:
                target = target.rpartition(".")[0]
            if target != name and target not in found:
                found.append(target)
                yield Import(name, target, path, node.lineno)


def layer_of(module: str, layers: Sequence[Sequence[str]]) -> tuple[int, str] | None:
    """The layer index and table entry a module belongs to: the longest entry naming it."""
    best: tuple[int, str] | None = None
    for index, entries in enumerate(layers):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                if best is None or len(entry) > len(best[1]):
                    best = (index, entry)
    return best


Step = tuple[str, str, Import]


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[Step]]:
    """One circle of imports through each strongly connected group of nodes (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, {})):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [circle_in(group, edges) for group in groups]


def circle_in(group: set[str], edges: dict[str, dict[str, Import]]) -> list[Step]:
    """A shortest circle through the group's first node: each step from one node to the
    next, with an import statement that makes it."""
    start = min(group)
    # How each node was first reached: the node before it and the import between them.
    previous: dict[str, Step] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ, edge in sorted(edges.get(node, {}).items()):
                if succ == start:
                    circle = [(node, succ, edge)]
                    while circle[0][0] != start:
                        circle.insert(0, previous[circle[0][0]])
                    return circle
                if succ in group and succ not in previous:
                    previous[succ] = (node, succ, edge)
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no circle through {start}")


def layer_problems(root: Path, package: str, layers: Sequence[Sequence[str]] = LAYERS) -> list[str]:
    """Every module outside the table, every upward import, and every circle of imports
    between modules and between the table's entries (subpackages of one layer), each
    named by the statements (file:line) that make it."""
    modules = module_names(root, package)
    problems = []
    placed = {}
    for name, path in modules.items():
        layer = layer_of(name, layers)
        if layer is None:
            problems.append(f"{path}: module {name} is in no layer: add it to LAYERS")
        else:
            placed[name] = layer
    module_edges: dict[str, dict[str, Import]] = defaultdict(dict)
    entry_edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for name, path in modules.items():
        for edge in imports_of(name, path, modules, package):
            module_edges[name].setdefault(edge.imported, edge)
            if name not in placed or edge.imported not in placed:
                continue
            (own, own_entry), (theirs, their_entry) = placed[name], placed[edge.imported]
            if theirs < own:
                problems.append(
                    f"{edge.where()}: {name} (layer {own_entry}) imports {edge.imported}, "
                    f"which is in the higher layer {their_entry}"
                )
            elif own_entry != their_entry:
                entry_edges[own_entry].setdefault(their_entry, edge)
    for kind, edges in (("modules", module_edges), ("packages", entry_edges)):
        for circle in cycles(edges):
            steps = ", ".join(
                f"{a} -> {b} ({e.where()})"
                if (a, b) == (e.importer, e.imported)
                else f"{a} -> {b} ({e.importer} imports {e.imported}, {e.where()})"
                for a, b, e in circle
            )
            problems.append(f"circle of imports between {kind}: {steps}")
    return problems


def test_dml_imports_run_down_the_layers_without_circles() -> None:
    problems = layer_problems(ROOT, "dml")
    assert not problems, "\n".join(problems)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for directory in [root / "pkg", *(root / "pkg").rglob("*")]:
        if directory.is_dir() and not (directory / "__init__.py").exists():
            (directory / "__init__.py").write_text("")
    return root / "pkg"


TOY_LAYERS = (("pkg", "pkg.top"), ("pkg.low", "pkg.side"), ("pkg.base",))


def test_upward_imports_are_named_by_file_and_line_wherever_they_stand(tmp_path: Path) -> None:
    root = write_package(
        tmp_path,
        {
            "top.py": "import pkg.side\n",
            "low.py": "def late():\n    from pkg.top import x\n",
            "base.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg import side\n"
            ),
            "side.py": "",
        },
    )
    problems = layer_problems(root, "pkg", TOY_LAYERS)
    assert problems == [
        f"{root / 'base.py'}:4: pkg.base (layer pkg.base) imports pkg.side, "
        "which is in the higher layer pkg.side",
        f"{root / 'low.py'}:2: pkg.low (layer pkg.low) imports pkg.top, "
        "which is in the higher layer pkg.top",
    ]


def test_circles_within_one_layer_are_reported(tmp_path: Path) -> None:
    root = write_package(
        tmp_path,
        {
            # A circle of modules inside one subpackage, one import hidden in a function.
            "low/a.py": "from pkg.low.b import f\n",
            "low/b.py": "def f():\n    from pkg.low import a\n",
            # Subpackages of one layer importing each other through different modules.
            "low/c.py": "import pkg.side.d\n",
            "side/d.py": "",
            "side/e.py": "from pkg.low.c import x\n",
            "top.py": "",
            "base.py": "",
        },
    )
    problems = layer_problems(root, "pkg", TOY_LAYERS)
    assert problems == [
        "circle of imports between modules: "
        f"pkg.low.a -> pkg.low.b ({root / 'low/a.py'}:1), "
        f"pkg.low.b -> pkg.low.a ({root / 'low/b.py'}:2)",
        "circle of imports between packages: "
        f"pkg.low -> pkg.side (pkg.low.c imports pkg.side.d, {root / 'low/c.py'}:1), "
        f"pkg.side -> pkg.low (pkg.side.e imports pkg.low.c, {root / 'side/e.py'}:1)",
    ]


def test_a_module_outside_the_table_is_named(tmp_path: Path) -> None:
    root = write_package(tmp_path, {"top.py": "", "base.py": "", "stray.py": ""})
    assert layer_problems(root, "pkg", (("pkg.top",), ("pkg.base",))) == [
        f"{root / '__init__.py'}: module pkg is in no layer: add it to LAYERS",
        f"{root / 'stray.py'}: module pkg.stray is in no layer: add it to LAYERS",
    ]


@pytest.mark.parametrize(
    ("module", "layer"),
    [("dml", "dml"), ("dml.config.build", "dml.config"), ("dml.instantiate", "dml.instantiate")],
)
def test_a_module_belongs_to_the_longest_entry_naming_it(module: str, layer: str) -> None:
    found = layer_of(module, LAYERS)
    assert found is not None and found[1] == layer
