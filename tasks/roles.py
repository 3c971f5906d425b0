"""Parameter roles read from haiku parameter names.

Every model in ``tasks`` names each weight-holding module after its role: ``input_*`` (reads the
data: first layer, embeddings, patch projection), ``hidden_*`` (both sides scale with width),
``output_*`` or ``output`` (the readout). Parameters of at most one dimension (biases, norm scales
and offsets) are ``vector`` whatever their module. μLO-style optimizers read these roles.
"""

from tasks.base import ROLES

_MATRIX_ROLES = tuple(role for role in ROLES if role != "vector")


def role_of(module: str, name: str, ndim: int) -> str:
  """The role of parameter ``name`` (of ``ndim`` dimensions) of the haiku module path ``module``."""
  if ndim <= 1:
    return "vector"
  role = module.rsplit("/", 1)[-1].split("_", 1)[0]
  if role not in _MATRIX_ROLES:
    raise ValueError(f"cannot tell the role of parameter '{module}/{name}': its module name must "
                     f"start with one of {list(_MATRIX_ROLES)}")
  return role


def roles_from_names(params) -> dict[str, dict[str, str]]:
  """A tree like haiku ``params`` (``{module: {name: array}}``) of role names from ``ROLES``."""
  return {module: {name: role_of(module, name, len(value.shape)) for name, value in group.items()}
          for module, group in params.items()}
