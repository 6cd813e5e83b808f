"""Package layering: `render` (rays, rasterization, volume rendering, renders folders) is below `data` (readers,
preprocessing, caches); the shared leaf modules (camera, labels, jsonio, outputs) import neither."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "handcli"


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_imported_modules_sees_lazy_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from handcli.data.shards import open_cache\n")
    assert "handcli.data.shards" in imported_modules(p)


@pytest.mark.parametrize("files, forbidden", [
    (sorted((PKG / "render").glob("*.py")), ("handcli.data", "handcli.methods", "handcli.commands")),
    ([PKG / "camera.py", PKG / "labels.py", PKG / "jsonio.py", PKG / "outputs.py"],
     ("handcli.data", "handcli.render", "handcli.methods", "handcli.commands")),
])
def test_lower_layers_do_not_import_upper_ones(files, forbidden):
    assert files
    bad = {f"{f.relative_to(PKG)} imports {m}" for f in files for m in imported_modules(f)
           if m.startswith(forbidden)}
    assert not bad, sorted(bad)


def test_library_never_reads_argv():
    """The command line is formed in handcli/commands (cmdline.command_line) and passed to the library."""
    lib = [p for p in PKG.rglob("*.py") if "commands" not in p.parts and p.name != "cli.py"]
    assert not [str(p.relative_to(PKG)) for p in lib if "sys.argv" in p.read_text()]
