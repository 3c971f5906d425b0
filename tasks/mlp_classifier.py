"""A family of MLP classifiers (``tasks.networks.mlp``) on an in-memory dataset.

Tasks share the architecture and data set and differ in the data variations of ``tasks.variation``
(all off by default) and in the keys the caller passes to ``init`` and ``batch``. The readout's width
multiplier is ``hidden_sizes[-1] / base_width``.
"""

import dataclasses
from typing import ClassVar

from tasks import networks
from tasks.classification import ClassifierFamily


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPClassifierFamily(ClassifierFamily):
  """MLP classifiers with hidden layers of ``hidden_sizes`` (at least one)."""

  hidden_sizes: tuple[int, ...] = (32,)

  name: ClassVar[str] = "mlp_classifier"

  def check_sizes(self, input_shape):
    if not self.hidden_sizes or not all(isinstance(h, int) and h > 0 for h in self.hidden_sizes):
      raise ValueError(f"hidden_sizes must be one or more positive integers, "
                       f"got {self.hidden_sizes}")

  def network(self, inputs, num_classes):
    return networks.mlp(inputs, self.hidden_sizes, num_classes, self.parametrization,
                        self.base_width)

  def at_base_width(self):
    return dataclasses.replace(self, hidden_sizes=(self.base_width,) * len(self.hidden_sizes))
