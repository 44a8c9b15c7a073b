"""Replace (or append) one generated block of BENCHMARKS.md, delimited by a bench script's begin/end markers."""

from __future__ import annotations

from pathlib import Path


def write_block(path: Path, begin: str, end: str, lines: list[str]) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n" + "\n".join(lines) + f"\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text += f"\n{block}\n"
    path.write_text(text)
