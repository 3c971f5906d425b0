"""A family of small ViT image classifiers (``tasks.transformer.vit``) over width and depth."""

import dataclasses
from typing import ClassVar

from tasks import transformer
from tasks.classification import ClassifierFamily


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViTClassifierFamily(ClassifierFamily):
  """ViTs on ``patch_size`` patches with ``depth`` blocks of ``width`` and ``num_heads`` heads."""

  patch_size: int = 4
  width: int = 32
  depth: int = 2
  num_heads: int = 2

  name: ClassVar[str] = "vit_classifier"

  def check_sizes(self, input_shape):
    if len(input_shape) != 3:
      raise ValueError(f"a ViT needs images [height, width, channels]; dataset '{self.dataset}' "
                       f"has examples of shape {input_shape}")
    for name in ("width", "depth", "num_heads"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    for size in input_shape[:2]:
      transformer.check_patches(size, self.patch_size)
    transformer.check_heads(self.width, self.num_heads, self.base_width)

  def network(self, inputs, num_classes):
    return transformer.vit(inputs, num_classes, self.patch_size, self.width, self.depth,
                           self.num_heads, self.parametrization, self.base_width)

  def at_base_width(self):
    return dataclasses.replace(self, width=self.base_width)
