"""The docs are self-contained: no reference to files outside the repository, and no dangling doc reference.

Every Markdown path cited in the code, docs and tests must exist in the repository, and every cited
``#anchor`` must exist in the page it names (an explicit ``<a id="...">`` or a heading's GitHub slug).
README.md must list every method and every stage.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["handcli", "docs", "tests", "bench", "scripts", "README.md"]
SUFFIXES = {".py", ".md", ".sh", ".txt", ".toml", ".cfg", ".yml", ".yaml", ".json"}

# References to files that users of the repository do not have. The character classes keep these
# patterns from matching this file itself.
OUTSIDE = [
    re.compile(r"spec[s]/"),
    re.compile(r"DESIG[N][.]md"),
    re.compile(r"[.][.]/share[d]"),
    re.compile(r"/wor[k]/"),
    re.compile(r"(?<![\w-])paper[s]/"),
]
URL = re.compile(r"https?://\S+")
MD_REF = re.compile(r"(?<![\w./-])([A-Za-z0-9_][\w./-]*\.md)(?:#([\w-]+))?")
LOCAL_ANCHOR = re.compile(r"\]\(#([\w-]+)\)")


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        p = ROOT / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES
                          and "__pycache__" not in f.parts)
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = md.read_text(encoding="utf-8")
    ids = set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            ids.add(_slug(line.lstrip("#")))
    return ids


def _resolve(ref: str, citing: Path) -> Path | None:
    """The repository file a Markdown reference names, or None."""
    if ref.startswith("docs/"):
        candidates = [ROOT / ref]
    else:
        candidates = [citing.parent / ref, ROOT / "docs" / ref, ROOT / ref]
    for c in candidates:
        c = c.resolve()
        if c.is_file() and ROOT in c.parents:
            return c
    return None


def test_scans_the_repository():
    files = _files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "formats.md" in files
    assert any(f.suffix == ".py" and "handcli" in f.parts for f in files)


def test_no_reference_to_files_outside_the_repository():
    bad = []
    for f in _files():
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in OUTSIDE):
                bad.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "references to files outside the repository:\n" + "\n".join(bad)


def test_every_cited_doc_and_anchor_exists():
    bad = []
    anchors: dict[Path, set[str]] = {}
    n_refs = 0
    for f in _files():
        text = f.read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines(), 1):
            line = URL.sub("", line)
            for m in MD_REF.finditer(line):
                n_refs += 1
                ref, anchor = m.group(1), m.group(2)
                target = _resolve(ref, f)
                where = f"{f.relative_to(ROOT)}:{i}"
                if target is None:
                    bad.append(f"{where}: {ref} does not exist")
                elif anchor is not None:
                    if target not in anchors:
                        anchors[target] = _anchors(target)
                    if anchor not in anchors[target]:
                        bad.append(f"{where}: {ref}#{anchor}: no such anchor")
            if f.suffix == ".md":
                for m in LOCAL_ANCHOR.finditer(line):
                    if f not in anchors:
                        anchors[f] = _anchors(f)
                    if m.group(1) not in anchors[f]:
                        bad.append(f"{f.relative_to(ROOT)}:{i}: #{m.group(1)}: no such anchor")
    assert n_refs > 50  # the scan does see the docs' cross-references
    assert not bad, "dangling doc references:\n" + "\n".join(bad)


def test_dangling_references_are_caught(tmp_path):
    assert _resolve("docs/formats.md", ROOT / "README.md") == ROOT / "docs" / "formats.md"
    assert _resolve("metrics.md", ROOT / "docs" / "renders.md") == ROOT / "docs" / "metrics.md"
    md = ".md"  # split so that the scan of this file does not see dangling names
    assert _resolve("docs/no-such-page" + md, ROOT / "README.md") is None
    assert _resolve("methods" + md, ROOT / "handcli" / "cli.py") is None
    assert "interhand26m" in _anchors(ROOT / "docs" / "formats.md")
    assert "per-dataset-flags" in _anchors(ROOT / "docs" / "hand-model.md")  # a heading's slug
    assert "no-such-anchor" not in _anchors(ROOT / "docs" / "formats.md")
    s = "s/"  # a variable, so that the compiler does not fold these into the strings they test
    outside = ["see spec" + s + "datasets" + md, "DESIG" + "N" + md, ".." + s[1] + "shared" + s[1] + "x",
               "the paper" + s + "x.txt"]
    assert all(any(p.search(s) for p in OUTSIDE) for s in outside)
    assert not any(p.search("the papers' code and docs/formulas.md") for p in OUTSIDE)


def test_readme_lists_every_method_and_stage():
    from handcli.cli import app
    from handcli.registry import METHODS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f"method {k}" for k in METHODS if f"`{k}`" not in readme]
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__.replace("_", "-")
        if f"handcli {name} " not in readme:
            missing.append(f"stage {name}")
    for group in app.registered_groups:
        for cmd in group.typer_instance.registered_commands:
            sub = cmd.name or cmd.callback.__name__.replace("_", "-")
            if not re.search(rf"handcli {group.name} ([\w-]+\|)*{re.escape(sub)}\b", readme):
                missing.append(f"stage {group.name} {sub}")
    assert not missing, "README.md does not list: " + ", ".join(missing)


@pytest.mark.parametrize("page,n_repos", [("formats.md", 5), ("formulas.md", 3)])
def test_reference_pages_cite_their_sources(page, n_repos):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert "sources" in _anchors(ROOT / "docs" / page)
    assert len(re.findall(r"\b[\w-]+/[\w.-]+ @[0-9a-f]{7,}", text)) >= n_repos  # repository @ commit
