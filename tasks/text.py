"""Character-level text corpora: one that ships with Python itself, and TFDS's Tiny Shakespeare.

``python_docs`` (about 1.36 million characters with CPython 3.11) is, in this order:

1. ``pydoc_data.topics.topics``: the help texts of the language reference that ``help()`` shows,
   one per topic, topics in sorted order;
2. the docstrings of every top-level module of the standard library (``<stdlib>/*.py``, files in
   sorted order; packages and tests left out), read with ``ast`` (nothing is imported), each file's
   module, class and function docstrings in source order.

Texts are joined by a blank line. The corpus depends only on the Python version's standard
library, needs no network and is read in a few seconds once per process. The last 10% of the
tokens are the ``test`` split, the rest ``train``.

``tiny_shakespeare``: TFDS ``tiny_shakespeare``, Karpathy's 1.1 million characters of Shakespeare's
plays, split by TFDS into ``train`` (the first 90%), ``validation`` (the next 5%) and ``test`` (the
last 5%), each one text. It is read from ``data_dir`` by ``tasks.tfds_data`` (TFDS's own reader, no
TensorFlow) and must have been prepared there once, as that module describes.

Characters map to a fixed vocabulary of ``VOCAB_SIZE = 97`` tokens: 0 for any character outside it,
1 for newline, and ``2 + ord(c) - 32`` for the printable ASCII characters ``' '..'~'``.
``TextData`` names a corpus, the data directory and the splits a task trains (``train``) and is
evaluated (``test``) on; ``TextData.arrays()`` holds their tokens on device.
"""

import ast
import dataclasses
import functools
import gc
import sysconfig
from pathlib import Path

import jax
import numpy as np

from tasks import tfds_data
from tasks.base import on_device

CORPUS_SPLITS = {"python_docs": ("train", "test"),
                 "tiny_shakespeare": ("train", "validation", "test")}
CORPORA = tuple(CORPUS_SPLITS)
TFDS_CORPORA = ("tiny_shakespeare",)
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

  visit(_parse(source))
  return found


def _parse(source: str) -> ast.Module:
  """``ast.parse`` with the cyclic garbage collector paused.

  CPython 3.11's ``ast.parse`` keeps one recursion counter per interpreter. A collection during the
  parse can run a finalizer that parses too (asyncio's "Task exception was never retrieved" logs
  a traceback, and 3.11's traceback module calls ``ast.parse``), which breaks the counter
  ("SystemError: AST constructor recursion depth mismatch"). No finalizer runs mid-parse with the
  collector paused.
  """
  was_enabled = gc.isenabled()
  gc.disable()
  try:
    return ast.parse(source)
  finally:
    if was_enabled:
      gc.enable()


def python_docs_text() -> str:
  """The ``python_docs`` corpus as one string; see the module docstring."""
  from pydoc_data.topics import topics
  texts = [topics[name] for name in sorted(topics)]
  sources = [path.read_text(encoding="utf-8")
             for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))]
  for source in sources:
    texts.extend(_docstrings(source))
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
def _python_docs() -> dict[str, np.ndarray]:
  tokens = encode(python_docs_text())
  num_train = len(tokens) - int(round(_TEST_FRACTION * len(tokens)))
  return {"train": tokens[:num_train], "test": tokens[num_train:]}


def _read(name: str, split: str, data_dir: str) -> np.ndarray:
  """The tokens of ``split`` of corpus ``name``; a TFDS split's texts are joined by a blank line."""
  if name not in TFDS_CORPORA:
    return _python_docs()[split]
  texts = tfds_data.read(name, split, data_dir, ("text",))["text"]
  return encode("\n\n".join(t.decode("utf-8") for t in texts))


_read_on_device = on_device(_read)


@dataclasses.dataclass(frozen=True)
class TextData:
  """A corpus, where it is and which splits a task uses.

  Construction checks every setting and, for a TFDS corpus, that it is prepared in ``data_dir``.
  """

  name: str = "python_docs"
  data_dir: str = ""
  train_split: str = "train"
  test_split: str = "test"

  def __post_init__(self):
    check_corpus(self.name)
    for setting in ("train_split", "test_split"):
      if getattr(self, setting) not in CORPUS_SPLITS[self.name]:
        raise ValueError(f"unknown {setting} '{getattr(self, setting)}' for corpus '{self.name}'; "
                         f"valid choices: {list(CORPUS_SPLITS[self.name])}")
    if self.name in TFDS_CORPORA:
      tfds_data.check_prepared(self.name, self.data_dir)

  def arrays(self) -> dict[str, jax.Array]:
    """``{"train": tokens uint8 [N], "test": ...}`` on device, read and put there once."""
    return {"train": _read_on_device(self.name, self.train_split, self.data_dir),
            "test": _read_on_device(self.name, self.test_split, self.data_dir)}


def load(name: str, **settings) -> dict[str, np.ndarray]:
  """The tokens of ``TextData(name, **settings)`` on the host; ``load("python_docs")`` needs no
  files."""
  tokens = TextData(name, **settings).arrays()
  return {split: np.asarray(split_tokens) for split, split_tokens in tokens.items()}
