"""Labelled datasets held in memory as arrays.

``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes). It ships inside
the scikit-learn wheel, so it needs no network. Pixels are scaled from [0, 16] to [0, 1] and images
kept as ``[8, 8, 1]``; a fixed permutation (seed 0) keeps 20% of the images as the ``test`` split,
and the training split is stored in that shuffled order (so any contiguous slice of it is a random
subset).
"""

import functools

import numpy as np

DATASETS = ("digits",)
INPUT_SHAPES = {"digits": (8, 8, 1)}  # One example's shape, known without loading the data.
_TEST_FRACTION = 0.2


def check_dataset(name: str) -> None:
  if name not in DATASETS:
    raise ValueError(f"unknown dataset '{name}'; valid choices: {list(DATASETS)}")


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Returns ``{split: (inputs float32 [N, ...], labels int32 [N])}`` for ``train`` and ``test``."""
  check_dataset(name)
  from sklearn.datasets import load_digits  # Imported here: only this dataset needs scikit-learn.
  digits = load_digits()
  inputs = (digits.images[..., None] / 16.0).astype(np.float32)
  labels = digits.target.astype(np.int32)
  order = np.random.RandomState(0).permutation(len(labels))
  num_test = int(round(_TEST_FRACTION * len(labels)))
  test, train = order[:num_test], order[num_test:]
  return {"train": (inputs[train], labels[train]), "test": (inputs[test], labels[test])}
