"""Layering: the library never imports the CLI layer (rnnlab.tasks, rnnlab.cli); the task modules import only
downward (the library, and the task plumbing in tasks/common.py and tasks/runstate.py)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "rnnlab"
CLI_LAYER = ("rnnlab.tasks", "rnnlab.cli", "rnnlab.__main__")
# the one remaining upward import: explore's file sniffing reads task files with tasks.runstate.read_task_file
# (runstate is owned elsewhere; listed here so that any new upward import fails this test)
ALLOWED = {("rnnlab/explore/session.py", "rnnlab.tasks.runstate")}


def _imports(path):
    """Absolute names of every module imported by ``path`` (relative imports resolved)."""
    rel = path.relative_to(ROOT.parent)
    pkg = list(rel.with_suffix("").parts)
    if pkg[-1] == "__init__":
        pkg = pkg[:-1]
    else:
        pkg = pkg[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def _library_files():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).as_posix()
        if rel.startswith("rnnlab/tasks/") or rel in ("rnnlab/cli.py", "rnnlab/__main__.py"):
            continue
        yield rel, p


def test_import_resolution_sees_relative_imports():
    mods = _imports(ROOT / "tasks" / "charlm.py")
    assert "rnnlab.tasks.common" in mods and "rnnlab.models.lm" in mods


@pytest.mark.parametrize("rel,path", list(_library_files()), ids=lambda v: v if isinstance(v, str) else "")
def test_library_does_not_import_cli_layer(rel, path):
    bad = sorted({m for m in _imports(path) if m.startswith(CLI_LAYER)
                  and not any(rel == f and m.startswith(a) for f, a in ALLOWED)})
    assert not bad, f"{rel} imports the CLI layer: {bad}"


@pytest.mark.parametrize("task", ["charlm", "wordlm", "classify", "seq2seq", "tag"])
def test_task_modules_import_only_downward(task):
    own = {f"rnnlab.tasks.{task}", "rnnlab.tasks.common", "rnnlab.tasks.runstate"}
    # classify's --model fasttext branch delegates to the fastText task (a sibling command, not a helper borrow)
    if task == "classify":
        own.add("rnnlab.tasks.fasttext")
    siblings = sorted({m.rsplit(".", 1)[0] if m.count(".") > 2 else m for m in _imports(ROOT / "tasks" / f"{task}.py")
                       if m.startswith("rnnlab.tasks.") and m.count(".") >= 2})
    bad = [m for m in siblings if m not in own and not any(m.startswith(o + ".") for o in own)]
    assert not bad, f"tasks/{task}.py borrows from sibling task modules: {bad}"
