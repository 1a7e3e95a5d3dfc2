"""The package's shape: three layers whose import rules hold, and a README that lists every module.

The library (``iokit/``) imports neither the lab nor the app; the lab (``iokit/lab/``) does not
import the app. Checked from the source with ``ast``, so a lazy import inside a function counts
too.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "iokit"
LAYERS = {"library": 0, "lab": 1, "app": 2}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("lab", "app") else "library"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every ``iokit`` module ``path`` (module ``name``) imports, relative imports resolved."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "iokit")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "iokit":
                continue
            out.add(target)
            # ``from iokit import lab`` / ``from iokit.lab import plots`` name submodules
            out.update(f"{target}.{a.name}" for a in node.names
                       if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).exists()
                       or (PACKAGE.parent / (f"{target}.{a.name}".replace(".", "/") + ".py"))
                       .exists())
    return out


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_import_only_downwards():
    wrong = []
    for path in all_modules():
        mine = layer_of(module_name(path))
        if path == PACKAGE / "__main__.py":
            continue  # ``python -m iokit`` is the app's entry point
        for target in imported_modules(path):
            if LAYERS[layer_of(target)] > LAYERS[mine]:
                wrong.append(f"{path.relative_to(ROOT)} ({mine}) imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("def f():\n    from .lab import plots\n    from iokit.app.cli import main\n")
    found = imported_modules(bad, "iokit.probe")
    assert {"iokit.lab", "iokit.lab.plots", "iokit.app.cli"} <= found
    assert [layer_of(m) for m in sorted(found)] == ["app", "lab", "lab"]


def test_readme_lists_every_module_and_no_other():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(iokit/[\w/]+\.py)`", readme))
    present = {str(p.relative_to(ROOT)) for p in all_modules()
               if p.name not in ("__init__.py", "__main__.py")}
    assert not present - listed, f"modules missing from the README's table: {present - listed}"
    assert not listed - present, f"the README names modules that do not exist: {listed - present}"
