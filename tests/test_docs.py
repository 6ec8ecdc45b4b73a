"""The documentation stands on its own: every link and repo path it names exists, and nothing in the
repository points at files outside it (a user clones this repository and nothing else)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "jobs" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", "node_modules", "build", "dist"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh", ".json", ""}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# built from parts so that this file does not match itself
OUTSIDE = re.compile("|".join([
    r"(?:\.\./)*" + "shared" + r"/(?:spec|STACK|ASSETS|STYLE|DESIGN|seeds|hooks)\b",
    r"\b(?:PAPERS|STACK|ASSETS|IMPLEMENTING|DESIGN|STYLE)" + r"\.md\b",
]))


def _repo_files():
    import os

    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES:
                yield path


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, flags=re.M)}


def _without_code_blocks(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(_without_code_blocks(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target) or target.startswith("#") and not target[1:]:
            continue  # http(s), mailto: not ours to check
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target} (no {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif not path.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target} (no heading #{anchor} in {path.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_repo_paths_named_in_code_spans_exist(doc):
    """`platform/recplat/...`, `tests/...`, `jobs/...`: a path that starts at a top-level entry of the
    repository must exist (placeholders like `<paper>` and globs are patterns, not paths)."""
    top = {p.name for p in ROOT.iterdir()} - {"runs", ".venv", ".git"}
    missing = []
    for span in CODE_SPAN.findall(doc.read_text(encoding="utf-8")):
        token = span.strip().split()[0] if span.strip() else ""
        if not token or any(c in token for c in "<>*{}$") or ":" in token:
            continue
        first = token.split("/")[0]
        if "/" in token and first in top and not (ROOT / token.rstrip("/")).exists():
            missing.append(token)
    assert not missing, f"{doc.relative_to(ROOT)} names paths that are not in the repository: {missing}"


def test_the_documents_exist_and_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("docs/papers.md", "docs/stack.md", "docs/benchmarks.md", "jobs/README.md"):
        assert (ROOT / name).is_file()
        assert f"({name}" in readme, f"README.md does not link {name}"


def test_nothing_points_outside_the_repository():
    hits = []
    for path in _repo_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)


def test_the_outside_pattern_matches_what_it_must():
    """The check above would pass vacuously with a broken pattern."""
    for text in ("see ../" + "sha" + "red/spec/x.md §1", "(" + "sha" + "red/STA" + "CK.md)", "PAPERS" + ".md §3.3"):
        assert OUTSIDE.search(text), text
    for text in ("docs/papers.md §1.7", "docs/stack.md", "a cache shared by runs", "spec §1.8"):
        assert not OUTSIDE.search(text), text
