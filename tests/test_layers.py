"""The layering rules of docs/design.md, checked on every import in the source tree, including imports inside
functions (a lazy import still runs): the shared types import nothing of the project; tasks reach neither
torch nor the model; the judge reaches no model code; the model package reaches no harness, task or trainer
code; and no two modules import each other, however indirectly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("llava_types", "llava_eval", "llava_model", "tasks", "train", "synthetic")
MODEL_LIBRARIES = {"torch", "transformers", "safetensors", "accelerate", "deepspeed", "peft"}


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(root: Path, path: Path) -> set[str]:
    """Every name an import statement in the file can load, absolute; `if TYPE_CHECKING:` blocks never run."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def import_graph(root: Path, packages=PACKAGES) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> project modules it imports, module -> top-level external modules it imports)."""
    files = {_module_name(root, p): p for pkg in packages if (root / pkg).is_dir()
             for p in sorted((root / pkg).rglob("*.py"))}
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for module, path in files.items():
        internal[module], external[module] = set(), set()
        for name in _imported_names(root, path):
            if name.split(".")[0] not in packages:
                external[module].add(name.split(".")[0])
                continue
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()  # `from pkg.mod import function`: the module is the longest prefix that is a file
            if parts and ".".join(parts) != module:
                internal[module].add(".".join(parts))
    return internal, external


def reach(internal: dict[str, set[str]], start: str) -> set[str]:
    """Every project module that importing `start` loads: what it imports and the packages around each."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in internal)
        todo.extend(internal.get(module, ()))
    return seen


def violations(root: Path, packages=PACKAGES) -> list[str]:
    internal, external = import_graph(root, packages)
    out = []

    def libraries(modules) -> set[str]:
        return set().union(*(external[m] for m in modules))

    for module in sorted(internal):
        top = module.split(".")[0]
        reached = reach(internal, module) - {module}
        project = {m.split(".")[0] for m in reached}
        if top == "llava_types":
            if project - {"llava_types"} or external[module] - set(sys.stdlib_module_names):
                out.append(f"{module}: the shared types import only the standard library")
        elif top in ("tasks", "synthetic"):
            bad = sorted(project & {"llava_model", "llava_eval", "train"}) + sorted(
                libraries(reached | {module}) & MODEL_LIBRARIES)
            if bad:
                out.append(f"{module}: a task (or the synthetic world) reaches {', '.join(bad)}")
        elif module.startswith("llava_eval.judge"):
            model_code = sorted(m for m in reached if m.startswith("llava_model")) + sorted(
                libraries(reached | {module}) & MODEL_LIBRARIES)
            if model_code:
                out.append(f"{module}: the judge reaches model code ({', '.join(model_code)})")
        elif top == "llava_model":
            bad = sorted(project & {"llava_eval", "tasks", "train"})
            if bad:
                out.append(f"{module}: the model package reaches {', '.join(bad)}")
    out += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(internal)]
    return out


def cycles(internal: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), through direct imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(internal.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(internal):
        if v not in index:
            connect(v)
    return found


def test_the_source_tree_keeps_the_layering_rules():
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


CLEAN = {"llava_types/__init__.py": "import dataclasses\n", "tasks/__init__.py": "", "llava_model/__init__.py": "",
         "tasks/base.py": "from llava_types import Request\n", "llava_eval/__init__.py": "",
         "llava_model/model.py": "import torch\nfrom llava_types import Request\n",
         "llava_eval/judge/__init__.py": "", "llava_eval/judge/run.py": "from tasks import base\n"}


@pytest.mark.parametrize("broken, expected", [
    ({"tasks/pope.py": "def f():\n    import torch\n"}, "tasks.pope: a task (or the synthetic world) reaches torch"),
    ({"tasks/pope.py": "from tasks.helper import x\n", "tasks/helper.py": "from llava_model import model\n"},
     "tasks.helper: a task (or the synthetic world) reaches llava_model, torch"),
    ({"llava_eval/judge/score.py": "def f():\n    from llava_model.model import build\n"},
     "llava_eval.judge.score: the judge reaches model code (llava_model, llava_model.model, torch)"),
    ({"llava_model/load.py": "from llava_eval import runner\n", "llava_eval/runner.py": ""},
     "llava_model.load: the model package reaches llava_eval"),
    ({"llava_types/__init__.py": "import numpy\n"}, "llava_types: the shared types import only the standard library"),
    ({"llava_eval/runner.py": "from . import stats\n", "llava_eval/stats.py": "def f():\n    from .runner import x\n"},
     "import cycle: llava_eval.runner -> llava_eval.stats -> llava_eval.runner"),
])
def test_a_broken_rule_is_reported(tmp_path, broken, expected):
    assert violations(_tree(tmp_path, CLEAN)) == []
    assert expected in violations(_tree(tmp_path, broken))


def test_importing_a_task_loads_neither_torch_nor_the_model():
    code = ("import sys, tasks.pope, tasks.registry; tasks.registry.load_all(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'llava_model', 'llava_eval', 'train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def oversized(root: Path, packages=PACKAGES) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES (docs/design.md, Size)."""
    out = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")) if (root / pkg).is_dir() else ():
            source = path.read_text(encoding="utf-8")
            name = path.relative_to(root)
            if len(source.splitlines()) > MAX_MODULE_LINES:
                out.append(f"{name}: {len(source.splitlines())} lines")
            out += [f"{name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                    for node in ast.walk(ast.parse(source))
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    return out


def test_modules_and_functions_stay_small():
    assert oversized(ROOT, (*PACKAGES, "benchmarks")) == []


def test_an_oversized_module_or_function_is_reported(tmp_path):
    body = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES + "\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES)
    assert oversized(_tree(tmp_path, {"tasks/big.py": body})) == [
        f"tasks/big.py: {MAX_MODULE_LINES + 1} lines", f"tasks/big.py:1 f: {MAX_FUNCTION_LINES + 1} lines"]
