"""Prepared TensorFlow Datasets (TFDS) read into numpy arrays, without TensorFlow.

TFDS reads a prepared dataset without TensorFlow only by random access
(``DatasetBuilder.as_data_source``), which needs the ``array_record`` (or ``parquet``) file format;
examples are then parsed with numpy and images decoded with Pillow. TFDS's default format,
``tfrecord``, is read only through ``tf.data``, so datasets must be prepared as array_record.
Preparing runs TFDS's own download and encoding code, which does need TensorFlow and network, so it
is done once on any machine that has both::

  pip install tensorflow tensorflow-datasets==4.9.10 array_record
  tfds build mnist --file_format=array_record --data_dir=DIR

and ``DIR/mnist`` is copied into the data directory of the machine that trains.

The data directory is ``data_dir`` when given, else TFDS's default: ``$TFDS_DATA_DIR`` if set,
otherwise ``~/tensorflow_datasets``. A dataset is read in the version of the installed TFDS's
builder (``DIR/<name>/<version>``); a missing one raises ``DatasetNotPreparedError`` naming the
dataset, the directory searched and the commands above.

TFDS shuffles the examples of every split by a hash of their keys when it prepares a dataset, so the
stored order is a fixed random order. Reading decodes one example at a time in Python (about 0.3 ms
for a small image), so a dataset of 70000 images takes some 20 s, once per process. TensorFlow
Datasets is imported in the functions that use it: importing it takes about half a second and only
TFDS datasets need it.
"""

import functools
import os

import numpy as np


class DatasetNotPreparedError(FileNotFoundError, ValueError):
  """A TFDS dataset that is not prepared, in a readable format, in the data directory.

  A ``ValueError`` too, so that a config naming it is reported like any other bad setting.
  """


def _builder(name: str, data_dir: str):
  """TFDS's builder of ``name`` reading from ``data_dir``; raises if the data cannot be read."""
  import tensorflow_datasets as tfds
  root = os.path.expanduser(data_dir) if data_dir else tfds.core.constants.get_default_data_dir()
  builder = tfds.builder(name, data_dir=root)
  how = ("Reading needs no TensorFlow; to prepare it, run on a machine with network "
         "`pip install tensorflow tensorflow-datasets==4.9.10 array_record && "
         f"tfds build {name} --file_format=array_record --data_dir={root}` and copy "
         f"{os.path.join(root, name)} here (or set data_dir, or $TFDS_DATA_DIR, to where it is)")
  if not builder.is_prepared():
    raise DatasetNotPreparedError(
        f"TFDS dataset '{name}' is not prepared in the data directory {root} (looked for "
        f"{builder.data_dir}). {how}")
  readable = builder.info.available_file_formats() & tfds.core.FileFormat.with_random_access()
  if not readable:
    formats = sorted(f.value for f in builder.info.available_file_formats())
    raise DatasetNotPreparedError(
        f"TFDS dataset '{name}' in {builder.data_dir} is prepared as {formats} files, which only "
        f"TensorFlow reads; prepare it again with --file_format=array_record. {how}")
  return builder


def check_prepared(name: str, data_dir: str) -> None:
  """Raises ``DatasetNotPreparedError`` unless ``name`` can be read from ``data_dir``."""
  _builder(name, data_dir)


@functools.lru_cache(maxsize=None)
def read(name: str, split: str, data_dir: str, features: tuple[str, ...]) -> dict[str, np.ndarray]:
  """Returns ``{feature: array [num_examples, ...]}`` of ``split`` of ``name``, in stored order."""
  source = _builder(name, data_dir).as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))
  return {feature: np.stack([example[feature] for example in examples]) for feature in features}
