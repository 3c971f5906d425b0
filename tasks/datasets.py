"""Datasets held in memory as arrays.

``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes). It ships inside
the scikit-learn wheel, so it needs no network. Pixels are scaled from [0, 16] to [0, 1] and images
flattened to 64 features; a fixed permutation (seed 0) keeps 20% of the images as the ``test`` split.
"""

import functools

import numpy as np

DATASETS = ("digits",)
_TEST_FRACTION = 0.2


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Returns ``{split: (inputs float32 [N, D], labels int32 [N])}`` for ``train`` and ``test``."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset '{name}'; valid choices: {list(DATASETS)}")
  from sklearn.datasets import load_digits  # Imported here: only this dataset needs scikit-learn.
  digits = load_digits()
  inputs = (digits.data / 16.0).astype(np.float32)
  labels = digits.target.astype(np.int32)
  order = np.random.RandomState(0).permutation(len(labels))
  num_test = int(round(_TEST_FRACTION * len(labels)))
  test, train = order[:num_test], order[num_test:]
  return {"train": (inputs[train], labels[train]), "test": (inputs[test], labels[test])}
