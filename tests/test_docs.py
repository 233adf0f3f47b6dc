"""Citations of docs/design.md point at rules that exist, and nothing cites the design notes that
live outside the repository (a reader of the repository cannot open them)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"
# Assembled, so that this file does not cite them.
OUTSIDE_NOTES = "DECISIONS" + ".md"
OUTSIDE_REVISIONS = "DECISIONS" + " rev"
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "build", "dist", "runs", ".carry", "gpu-check"}

ANCHOR = re.compile(r"design\.md#([A-Za-z0-9_-]+)")  # docs/design.md#memory, or (design.md#memory) in docs/
NAMED = re.compile(r"docs/design\.md, ([A-Z][^\n]*)")  # "docs/design.md, Memory"
LOCAL = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")  # [Equality](#equality) inside design.md


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(markdown: str) -> list[str]:
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            out.append(m.group(1).strip())
    return out


def repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), or a walk of the tree without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        return [REPO / p for p in listed.decode().split("\0") if p and (REPO / p).is_file()]
    except (OSError, subprocess.SubprocessError):
        files = []
        for root, dirs, names in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            files += [Path(root) / n for n in names]
        return files


def text_files() -> dict[Path, str]:
    out = {}
    for path in repository_files():
        try:
            out[path] = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # videos, images, weights
    return out


def bad_citations(files: dict[Path, str], heads: list[str]) -> list[str]:
    """Every citation of docs/design.md whose heading is not in ``heads``, as ``file:line: text``."""
    anchors = {slug(h) for h in heads}
    bad = []
    for path, text in files.items():
        for n, line in enumerate(text.splitlines(), 1):
            found = [a for a in ANCHOR.findall(line) if a not in anchors]
            found += [
                rest
                for rest in NAMED.findall(line)
                if not any(re.match(re.escape(h) + r"(?!\w)", rest, re.IGNORECASE) for h in heads)
            ]
            if path == DESIGN:
                found += [a for a in LOCAL.findall(line) if a not in anchors]
            bad += [f"{path.relative_to(REPO)}:{n}: {f}" for f in found]
    return bad


def test_every_citation_of_the_design_page_names_a_heading_that_exists():
    heads = headings(DESIGN.read_text(encoding="utf-8"))
    assert len({slug(h) for h in heads}) == len(heads), "two headings share an anchor"
    files = text_files()
    files.pop(Path(__file__).resolve(), None)  # its examples of wrong citations below
    code = [p for p, t in files.items() if p.suffix == ".py" and ANCHOR.search(t)]
    assert len(code) >= 10, f"expected the code to cite docs/design.md, found {len(code)} files"
    assert bad_citations(files, heads) == []


def test_the_check_catches_a_wrong_citation():
    heads = ["Memory", "Partial and warnings", "Deviations from the authors' code"]
    good = "see docs/design.md#memory, docs/design.md#partial-and-warnings, docs/design.md, Memory.\n"
    good += "docs/design.md#deviations-from-the-authors-code; docs/design.md, Partial and warnings\n"
    bad = "docs/design.md#memroy and docs/design.md, Memorys\n"
    assert bad_citations({REPO / "good.py": good}, heads) == []
    assert bad_citations({REPO / "bad.py": bad}, heads) == ["bad.py:1: memroy", "bad.py:1: Memorys"]


def test_nothing_cites_notes_outside_the_repository():
    citing = [str(p.relative_to(REPO)) for p, t in text_files().items() if OUTSIDE_NOTES in t or OUTSIDE_REVISIONS in t]
    assert citing == [], f"cite docs/design.md instead of {OUTSIDE_NOTES} in {citing}"
