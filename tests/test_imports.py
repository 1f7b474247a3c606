"""The one-way import picture, read from the source with ``ast`` (nothing is imported).

Floors: ``streamcolor.engines`` at the bottom imports nothing else of
streamcolor; the user-facing ``streamcolor`` modules and ``streamcolor.trainer``
stand on it and never import each other; ``benchmarks`` and ``tests`` may
import anything.  No module uses a private (underscore) name of another
streamcolor module.  Each outside library with a home has one: PyAV in
``streamcolor/video/``, Ray in ``streamcolor/ray/pool.py``, zip and tar in
``streamcolor/engines/archives.py``, ONNX Runtime in ``streamcolor/engines/``
(and the trainer's quantizer, which calibrates with it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamcolor"


@dataclass(frozen=True)
class Import:
    file: str  # repo-relative posix path
    line: int
    module: str  # absolute dotted module imported (for "from m import x": m)
    names: tuple[str, ...]  # names taken from it ("from m import a, b"), () for "import m"


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if ".venv" not in p.parts)


def imports(path: Path) -> list[Import]:
    """Every import in a file, at any depth (functions included), relative ones made absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_of(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    rel = path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append(Import(rel, node.lineno, module, tuple(a.name for a in node.names)))
    return found


def private_uses(path: Path) -> list[str]:
    """``module._name`` used on a streamcolor module bound by ``import`` (``import streamcolor.x as m; m._y``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("streamcolor"):
                    bound[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamcolor"):
            for a in node.names:  # "from streamcolor import video" binds a module too
                bound[a.asname or a.name] = f"{node.module}.{a.name}"
    rel = path.relative_to(ROOT).as_posix()
    return [f"{rel}:{node.lineno}: {node.value.id}.{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
            and node.attr.startswith("_") and not node.attr.startswith("__")]


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


ENGINES, TRAINER = "streamcolor.engines", "streamcolor.trainer"
ALL_FILES = python_files("streamcolor", "tests", "benchmarks")
LIBRARY = [p for p in python_files("streamcolor")]
USER_FACING = [p for p in LIBRARY if not is_under(module_of(p), ENGINES) and not is_under(module_of(p), TRAINER)]


def offending(files: list[Path], bad) -> list[str]:
    return [f"{i.file}:{i.line}: {i.module}" for p in files for i in imports(p) if bad(i)]


def test_the_reader_sees_the_tree():
    assert len(USER_FACING) > 20 and any(module_of(p) == "streamcolor.ray.pool" for p in USER_FACING)
    assert any(i.module == "streamcolor.engines" for i in imports(PACKAGE / "trainer" / "data.py"))


def test_engines_import_nothing_else_of_streamcolor():
    engines = [p for p in LIBRARY if is_under(module_of(p), ENGINES)]
    assert offending(engines, lambda i: is_under(i.module, "streamcolor") and not is_under(i.module, ENGINES)) == []


def test_user_facing_modules_never_import_the_trainer():
    assert offending(USER_FACING, lambda i: is_under(i.module, TRAINER)) == []


def test_trainer_imports_only_engines_of_streamcolor():
    trainer = [p for p in LIBRARY if is_under(module_of(p), TRAINER)]
    allowed = (ENGINES, TRAINER)
    assert offending(trainer, lambda i: is_under(i.module, "streamcolor")
                     and not any(is_under(i.module, a) for a in allowed)
                     and not (i.module == "streamcolor" and set(i.names) <= {"engines", "trainer"})) == []


def test_no_private_name_of_another_module_is_used():
    def private_from_elsewhere(i: Import) -> bool:
        return is_under(i.module, "streamcolor") and i.module != module_of(ROOT / i.file) and any(
            n.startswith("_") and not n.startswith("__") for n in i.names)

    bad = offending(ALL_FILES, private_from_elsewhere)
    bad += [use for p in ALL_FILES for use in private_uses(p)]
    assert bad == []


@pytest.mark.parametrize("library, home", [
    ("av", ["streamcolor/video/"]),
    ("ray", ["streamcolor/ray/pool.py"]),
    ("zipfile", ["streamcolor/engines/archives.py"]),
    ("tarfile", ["streamcolor/engines/archives.py"]),
    ("onnxruntime", ["streamcolor/engines/"]),
])
def test_each_outside_library_has_one_home(library, home):
    files = USER_FACING + [p for p in LIBRARY if is_under(module_of(p), ENGINES)]
    found = {i.file for p in files for i in imports(p) if is_under(i.module, library)}
    assert found and all(any(f == h or (h.endswith("/") and f.startswith(h)) for h in home) for f in found), found


def test_onnx_runtime_outside_engines_only_in_the_quantizer():
    trainer = [p for p in LIBRARY if is_under(module_of(p), TRAINER)]
    assert {i.file for p in trainer for i in imports(p) if is_under(i.module, "onnxruntime")} <= {
        "streamcolor/trainer/quantize.py"}
