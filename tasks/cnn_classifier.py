"""A family of CNN image classifiers (``tasks.networks.cnn``) over width (channels) and depth."""

import dataclasses
from typing import ClassVar

from tasks import networks
from tasks.classification import ClassifierFamily


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNClassifierFamily(ClassifierFamily):
  """CNNs of ``depth`` 3x3 convolutions with ``width`` channels, pooled, then a readout."""

  width: int = 16
  depth: int = 2
  base_width: int = 16

  name: ClassVar[str] = "cnn_classifier"

  def check_sizes(self, input_shape):
    if len(input_shape) != 3:
      raise ValueError(f"a CNN needs images [height, width, channels]; dataset '{self.dataset}' "
                       f"has examples of shape {input_shape}")
    for name in ("width", "depth"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

  def network(self, inputs, num_classes):
    return networks.cnn(inputs, self.width, self.depth, num_classes, self.parametrization,
                        self.base_width)

  def at_base_width(self):
    return dataclasses.replace(self, width=self.base_width)
