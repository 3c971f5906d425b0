"""A character-level text corpus built from English text that ships with Python itself.

``python_docs`` (about 1.36 million characters with CPython 3.11) is, in this order:

1. ``pydoc_data.topics.topics``: the help texts of the language reference that ``help()`` shows,
   one per topic, topics in sorted order;
2. the docstrings of every top-level module of the standard library (``<stdlib>/*.py``, files in
   sorted order; packages and tests left out), read with ``ast`` (nothing is imported), each file's
   module, class and function docstrings in source order.

Texts are joined by a blank line. The corpus depends only on the Python version's standard
library, needs no network and is read in a few seconds once per process. Characters map to a fixed
vocabulary of ``VOCAB_SIZE = 97`` tokens: 0 for any character outside it, 1 for newline, and
``2 + ord(c) - 32`` for the printable ASCII characters ``' '..'~'``. The last 10% of the tokens are
the ``test`` split.
"""

import ast
import functools
import sysconfig
from pathlib import Path

import numpy as np

CORPORA = ("python_docs",)
VOCAB_SIZE = 97
_TEST_FRACTION = 0.1


def check_corpus(name: str) -> None:
  if name not in CORPORA:
    raise ValueError(f"unknown text corpus '{name}'; valid choices: {list(CORPORA)}")


def _docstrings(source: str) -> list[str]:
  """Module, class and function docstrings of ``source``, in source order."""
  found = []

  def visit(node):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      doc = ast.get_docstring(node)
      if doc:
        found.append(doc)
    for child in ast.iter_child_nodes(node):
      visit(child)

  visit(ast.parse(source))
  return found


def python_docs_text() -> str:
  """The ``python_docs`` corpus as one string; see the module docstring."""
  from pydoc_data.topics import topics
  texts = [topics[name] for name in sorted(topics)]
  for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
    texts.extend(_docstrings(path.read_text(encoding="utf-8")))
  return "\n\n".join(texts)


def encode(text: str) -> np.ndarray:
  """Token ids (uint8) of ``text`` in the fixed vocabulary."""
  codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
  printable = (codes >= 32) & (codes <= 126)
  return np.where(printable, codes - 30, np.where(codes == 10, 1, 0)).astype(np.uint8)


def decode(tokens) -> str:
  """The text of token ids; unknown characters come back as '?'."""
  table = ["?", "\n"] + [chr(c) for c in range(32, 127)]
  return "".join(table[int(t)] for t in tokens)


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict[str, np.ndarray]:
  """Returns ``{split: tokens uint8 [N]}`` for ``train`` and ``test``."""
  check_corpus(name)
  tokens = encode(python_docs_text())
  num_train = len(tokens) - int(round(_TEST_FRACTION * len(tokens)))
  return {"train": tokens[:num_train], "test": tokens[num_train:]}
