"""The package's layers, read from its source: no import circle, no upward arrow, and Ray
imported only under `runtime/`.

Every import counts, wherever it is written (module top, inside a function, under
TYPE_CHECKING): a deferred import still makes the lower layer depend on the higher one.
The order is docs/architecture.md's layer table, lowest first; a module that belongs to no
layer fails the test, so a new module is placed deliberately.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fslsage_ray"

# Lowest first. A module may import its own layer and the layers before it, never a later
# one. Entries are module names under fslsage_ray (a package stands for all its modules).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("registry", "errors", "lazy", "seeding", "notebook", "__init__")),
    ("config", ("config",)),
    ("tasks", ("tasks",)),
    ("data", ("data",)),
    ("models", ("models",)),
    ("algorithms", ("algorithms",)),
    ("world", ("experiment",)),
    ("system", ("system",)),
    ("runtime", ("runtime",)),
    ("outputs", ("outputs",)),
    ("memory", ("memory",)),
    ("language models", ("lm",)),  # decoding and E2E scores: under probes (generate_every)
    ("probes", ("probes",)),
    ("coordinator", ("simulation", "run", "callbacks", "stopping", "plan")),
    ("studies", ("compare", "study")),
    ("cli", ("cli", "__main__")),
]

# Violations allowed for now, each one line of `violations()`'s output with the reason; a line
# listed here that no longer occurs fails the test (empty since issue 26 landed).
KNOWN_EXCEPTIONS: list[str] = []


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name without the "fslsage_ray." prefix
    imported: str  # the same for a module of the package, else the full name (e.g. "ray")
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _lazy_exports(init: Path) -> dict[str, str]:
    """A package's `_EXPORTS = {"name": "submodule"}` (fslsage_ray.lazy): a name imported
    from the package really comes from that submodule."""
    for node in ast.parse(init.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return {
                ast.literal_eval(k): ast.literal_eval(v)
                for k, v in zip(node.value.keys, node.value.values, strict=True)
            }
    return {}


def _within(name: str) -> str | None:
    """'fslsage_ray.x.y' -> 'x.y' ('__init__' for the package itself); None outside it."""
    if name == "fslsage_ray":
        return "__init__"
    if name.startswith("fslsage_ray."):
        return name[len("fslsage_ray.") :]
    return None


def imports(modules: dict[str, Path]) -> list[Import]:
    """Every import statement of every module, resolved to the module it loads."""
    found = []
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    inner = _within(alias.name)
                    found.append(Import(importer, inner or alias.name, node.lineno))
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:  # relative: resolve against the importer's package
                anchor = ["fslsage_ray", *importer.split(".")]
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            inner = _within(base)
            if inner is None:
                found.append(Import(importer, base, node.lineno))
                continue
            for alias in node.names:
                found.append(Import(importer, _target(modules, inner, alias.name), node.lineno))
    return found


def _target(modules: dict[str, Path], package: str, name: str) -> str:
    """What `from fslsage_ray.<package> import <name>` loads: a submodule, the submodule a
    lazy export names, or the package (or module) itself."""
    prefix = "" if package == "__init__" else package + "."
    if prefix + name in modules:
        return prefix + name
    init = modules.get(package)
    if init is not None and init.name == "__init__.py":
        lazy = _lazy_exports(init).get(name)
        if lazy is not None:
            return prefix + lazy
    return package


def layer_of(module: str) -> int | None:
    best, rank = -1, None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > best:
                best, rank = len(member), index
    return rank


def unit_of(module: str) -> str:
    """The subpackage or top-level module a module belongs to."""
    return module.split(".")[0]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan), each listed from its
    smallest name along one of its cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(_cycle_through(sorted(group), edges))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def _cycle_through(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One cycle in a strongly connected group, from its smallest member back to it."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(edges.get(node, ()) & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    return [*group, start]


def violations(modules: dict[str, Path]) -> list[str]:
    """One line per broken rule."""
    found = []
    module_edges: dict[str, set[str]] = {m: set() for m in modules}
    unit_edges: dict[str, set[str]] = {}
    for imp in imports(modules):
        if imp.imported == "ray" or imp.imported.startswith("ray."):
            if not (imp.importer == "runtime" or imp.importer.startswith("runtime.")):
                found.append(f"ray outside runtime/: {imp.importer} (line {imp.line})")
            continue
        if imp.imported not in modules or imp.imported == imp.importer:
            continue
        module_edges[imp.importer].add(imp.imported)
        if unit_of(imp.importer) != unit_of(imp.imported):
            unit_edges.setdefault(unit_of(imp.importer), set()).add(unit_of(imp.imported))
        low, high = layer_of(imp.importer), layer_of(imp.imported)
        if low is not None and high is not None and high > low:
            found.append(
                f"upward: {imp.importer} ({LAYERS[low][0]}) imports {imp.imported} "
                f"({LAYERS[high][0]})"
            )
    found += [f"no layer: {m}" for m in modules if layer_of(m) is None]
    found += ["circle: " + " -> ".join(c) for c in circles(module_edges)]
    found += ["circle between packages: " + " -> ".join(c) for c in circles(unit_edges)]
    return sorted(set(found))


def test_no_circle_no_upward_arrow_and_ray_only_in_runtime():
    found = violations(_modules())
    unexpected = [v for v in found if v not in KNOWN_EXCEPTIONS]
    fixed = [v for v in KNOWN_EXCEPTIONS if v not in found]
    assert not unexpected, "\n".join(unexpected)
    assert not fixed, "no longer occurs, remove from KNOWN_EXCEPTIONS:\n" + "\n".join(fixed)


def test_the_layers_are_the_architecture_documents():
    """docs/architecture.md's table lists the layers in this order, lowest first."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    table = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows[1:] == [name for name, _ in LAYERS]  # rows[0] is the header


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a task importing a data module: an upward arrow
            {
                "data/__init__.py": "",
                "data/transforms.py": "",
                "tasks/__init__.py": "",
                "tasks/classification.py": "from fslsage_ray.data.transforms import make_batch\n",
            },
            "upward: tasks.classification (tasks) imports data.transforms (data)",
        ),
        (  # two packages through a function-level import: a circle (and an upward arrow)
            {
                "data/__init__.py": "",
                "data/sources.py": "def f():\n    from fslsage_ray.tasks import base\n",
                "tasks/__init__.py": "",
                "tasks/base.py": "from fslsage_ray.data.sources import f\n",
            },
            "circle between packages: data -> tasks -> data",
        ),
        (  # Ray in a function outside runtime/
            {"compare.py": "def pool():\n    import ray.util\n"},
            "ray outside runtime/: compare (line 2)",
        ),
        (  # a name of a lazy package resolves to its submodule
            {
                "config/__init__.py": "",
                "config/schema.py": "from fslsage_ray.data import load\n",
                "data/__init__.py": '_EXPORTS = {"load": "sources"}\n',
                "data/sources.py": "",
            },
            "upward: config.schema (config) imports data.sources (data)",
        ),
        ({"newthing.py": ""}, "no layer: newthing"),
    ],
)
def test_each_rule_catches_its_violation(tmp_path, monkeypatch, files, expected):
    root = tmp_path / "fslsage_ray"
    monkeypatch.setattr(f"{__name__}.PACKAGE", root)
    assert expected in violations(_write(root, files))
