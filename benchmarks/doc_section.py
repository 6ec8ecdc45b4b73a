"""Writing one benchmark's results into docs/benchmarks.md, between its own markers.

Each benchmark owns the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; the rest of
the file (other sections, notes written by hand) is left as it is. A section not there yet is
appended under `heading`.
"""

from __future__ import annotations

import platform
from pathlib import Path

import psutil

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine_description() -> str:
    """'host (arch, N logical CPUs, M GiB RAM)', for the machine line of a section."""
    cpu = f"{psutil.cpu_count(logical=True)} logical CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    return f"{platform.node()} ({platform.machine()}, {cpu})"


def shared_machine_note(loads: list[float], advice: str) -> list[str]:
    """A line saying the machine was shared, when the load average went past twice its CPUs."""
    cpus = psutil.cpu_count(logical=True)
    if max(loads) <= 2 * cpus:
        return []
    return [f"The machine was shared with other jobs (load average up to {max(loads)} on {cpus} CPUs): {advice}"]


def write_doc_section(name: str, heading: str, lines: list[str], doc: Path = DOC) -> None:
    """Replace the body of section `name` with `lines` (atomically), or append it under `heading`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = "\n".join([begin, *lines, end])
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text += f"\n## {heading}\n\n" + block + "\n"
    doc.parent.mkdir(exist_ok=True)
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(doc)
