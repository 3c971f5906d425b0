"""Parameter roles of models written the way users write them: ``lopt.trace_roles`` reads them from
the computation, ``lopt.infer_roles`` from the names, and each warns where it has to guess."""

import warnings

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import pytest

import lopt

try:
  from flax import nnx
except ImportError:  # an older flax
  nnx = None

KEY = jax.random.PRNGKey(0)
GUESS_WARNINGS = ("lopt.infer_roles guessed", "lopt.trace_roles could not")


def _spec(*shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


def _matrices(roles) -> dict[str, str]:
  """The entries of ``roles`` that are not ``vector``, by slash-joined path."""
  if nnx is not None and isinstance(roles, nnx.State):
    roles = nnx.to_pure_dict(roles)
  return {jax.tree_util.keystr(path, simple=True, separator="/"): role
          for path, role in jax.tree_util.tree_flatten_with_path(roles)[0] if role != "vector"}


def _quietly(fn, *args, **kwargs):
  """``fn(*args, **kwargs)``, checking that it warned of no guess."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fn(*args, **kwargs)
  guesses = [str(w.message) for w in caught if str(w.message).startswith(GUESS_WARNINGS)]
  assert not guesses, guesses
  return result


def _haiku(fn, *inputs):
  """(apply_fn, params, example args) of the haiku function ``fn``, its rng ``None``."""
  model = hk.transform(fn)
  return model.apply, jax.eval_shape(model.init, KEY, *inputs), (None, *inputs)


def _linen(module, *inputs):
  """(apply_fn, variables, example args) of the flax linen ``module``."""
  return module.apply, jax.eval_shape(module.init, KEY, *inputs), inputs


def haiku_mlp():
  return _haiku(lambda x: hk.nets.MLP([8, 8, 3])(x), _spec(2, 5))


def haiku_cnn():
  def cnn(x):
    x = jax.nn.relu(hk.Conv2D(4, 3)(x))
    x = jax.nn.relu(hk.Conv2D(4, 3, stride=2)(x))
    x = jax.nn.relu(hk.Linear(8)(hk.Flatten()(x)))
    return hk.Linear(3)(x)
  return _haiku(cnn, _spec(2, 8, 8, 1))


def haiku_rnn(core):
  def rnn(x):
    cell = core(8)
    hidden, _ = hk.dynamic_unroll(cell, x, cell.initial_state(x.shape[0]), time_major=False)
    return hk.Linear(3)(hidden)
  return _haiku(rnn, _spec(2, 4, 5))


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(8)(x))
    x = nn.relu(nn.Dense(8)(x))
    return nn.Dense(3)(x)


class LinenCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.avg_pool(nn.relu(nn.Conv(4, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(x)


class LinenRNN(nn.Module):
  """A recurrent layer and a readout, as in the report: ``nn.RNN(cell)`` then ``nn.Dense``."""
  cell: type

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(nn.RNN(self.cell(8))(x))


class LinenNamedRNN(nn.Module):
  """The same with modules named in ``setup``: ``cell/ii/kernel``…, ``readout``."""

  def setup(self):
    self.cell = nn.OptimizedLSTMCell(8)
    self.rnn = nn.RNN(self.cell)
    self.head = nn.Dense(3)

  def __call__(self, x):
    return self.head(self.rnn(x))


class LinenAttention(nn.Module):
  """Token embedding, a pre-norm self-attention block, a final norm and a readout."""

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(11, 8)(tokens)
    x = x + nn.MultiHeadDotProductAttention(num_heads=2)(nn.LayerNorm()(x))
    return nn.Dense(11)(nn.LayerNorm()(x))


def _nnx(make_model, *inputs):
  """(apply_fn, Param state, example args) of the flax nnx module ``make_model(rngs)``; its other
  state travels as an argument, as a module that updates its RNG counts needs."""
  graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))),
                                     nnx.Param, ...)
  return (lambda params, rest, x: nnx.merge(graphdef, params, rest)(x)), params, (rest, *inputs)


def nnx_mlp():
  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.fc1, self.fc2 = nnx.Linear(5, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)
      self.fc3 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(x)))))
  return _nnx(MLP, _spec(2, 5))


def nnx_rnn(cell):
  class RNN(nnx.Module):
    def __init__(self, rngs):
      self.rnn = nnx.RNN(cell(5, 8, rngs=rngs), rngs=rngs)
      self.readout = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.readout(self.rnn(x))
  return _nnx(RNN, _spec(2, 4, 5))


_MLP = {"0/kernel": "input", "1/kernel": "hidden", "2/kernel": "output"}
_LSTM = ({f"i{gate}/kernel": "input" for gate in "ifgo"}
         | {f"h{gate}/kernel": "hidden" for gate in "ifgo"})
_GRU = ({f"i{gate}/kernel": "input" for gate in "rzn"}
        | {f"h{gate}/kernel": "hidden" for gate in "rzn"})
_ATTENTION = {f"{name}/kernel": "hidden" for name in ("query", "key", "value", "out")}


def _prefixed(prefix: str, roles: dict[str, str]) -> dict[str, str]:
  return {f"{prefix}{path}": role for path, role in roles.items()}


# Models whose roles both functions read right and silently: (model, expected roles of matrices).
RECOGNISED = {
    "haiku_mlp": (haiku_mlp, _prefixed("mlp/~/linear_", {
        "0/w": "input", "1/w": "hidden", "2/w": "output"})),
    "haiku_cnn": (haiku_cnn, {"conv2_d/w": "input", "conv2_d_1/w": "hidden",
                              "linear/w": "hidden", "linear_1/w": "output"}),
    "haiku_lstm": (lambda: haiku_rnn(hk.LSTM), {"lstm/linear/w": "hidden", "linear/w": "output"}),
    "haiku_gru": (lambda: haiku_rnn(hk.GRU), {"gru/w_i": "input", "gru/w_h": "hidden",
                                              "linear/w": "output"}),
    "linen_mlp": (lambda: _linen(LinenMLP(), _spec(2, 5)), _prefixed("params/Dense_", _MLP)),
    "linen_cnn": (lambda: _linen(LinenCNN(), _spec(2, 8, 8, 1)), {
        "params/Conv_0/kernel": "input", "params/Conv_1/kernel": "hidden",
        "params/Dense_0/kernel": "hidden", "params/Dense_1/kernel": "output"}),
    "linen_lstm": (lambda: _linen(LinenRNN(nn.OptimizedLSTMCell), _spec(2, 4, 5)),
                   _prefixed("params/OptimizedLSTMCell_0/", _LSTM)
                   | {"params/Dense_0/kernel": "output"}),
    "linen_named_lstm": (lambda: _linen(LinenNamedRNN(), _spec(2, 4, 5)),
                         _prefixed("params/cell/", _LSTM) | {"params/head/kernel": "output"}),
    "linen_gru": (lambda: _linen(LinenRNN(nn.GRUCell), _spec(2, 4, 5)),
                  _prefixed("params/GRUCell_0/", _GRU) | {"params/Dense_0/kernel": "output"}),
    "linen_attention": (lambda: _linen(LinenAttention(), _spec(2, 6, dtype=jnp.int32)), {
        "params/Embed_0/embedding": "input", "params/Dense_0/kernel": "output"}
        | _prefixed("params/MultiHeadDotProductAttention_0/", _ATTENTION)),
    "nnx_mlp": (nnx_mlp, {"fc1/kernel": "input", "fc2/kernel": "hidden", "fc3/kernel": "output"}),
    "nnx_lstm": (lambda: nnx_rnn(nnx.LSTMCell), _prefixed("rnn/cell/", {
        path.replace("if/", "if_/"): role for path, role in _LSTM.items()})
        | {"readout/kernel": "output"}),
    "nnx_optimized_lstm": (lambda: nnx_rnn(nnx.OptimizedLSTMCell), {
        "rnn/cell/dense_i/kernel": "input", "rnn/cell/dense_h/kernel": "hidden",
        "readout/kernel": "output"}),
}


@pytest.mark.parametrize("name", RECOGNISED)
def test_trace_and_names_give_the_roles_of_recognised_models_without_warning(name):
  if name.startswith("nnx") and nnx is None:
    pytest.skip("this flax has no nnx")
  model, expected = RECOGNISED[name]
  apply_fn, params, args = model()
  assert _matrices(_quietly(lopt.trace_roles, apply_fn, params, *args)) == expected
  assert _matrices(_quietly(lopt.infer_roles, params)) == expected


def test_the_reported_lstm_gets_its_gates_and_readout_right_from_names():
  """The report: ``cell/io/kernel`` was taken for the output, the other input-to-gate kernels
  for hidden and the readout ``Dense_0/kernel`` for the input."""
  _, params, _ = _linen(LinenRNN(nn.OptimizedLSTMCell), _spec(2, 4, 5))
  roles = lopt.infer_roles(params)["params"]
  assert roles["Dense_0"]["kernel"] == "output"
  assert {roles["OptimizedLSTMCell_0"][f"i{g}"]["kernel"] for g in "ifgo"} == {"input"}
  assert {roles["OptimizedLSTMCell_0"][f"h{g}"]["kernel"] for g in "ifgo"} == {"hidden"}


def test_names_warn_where_only_path_order_is_left_and_the_trace_reads_the_model():
  def model(x):
    x = jax.nn.relu(hk.Linear(8, name="proj")(x))
    x = jax.nn.relu(hk.Linear(8, name="mix")(x))
    return hk.Linear(3, name="final")(x)
  apply_fn, params, args = _haiku(model, _spec(2, 5))
  with pytest.warns(UserWarning, match=r"guessed .*\['final'\]\['w'\]: input.*lopt.trace_roles"
                                       r".*roles="):
    lopt.infer_roles(params)
  assert _matrices(_quietly(lopt.trace_roles, apply_fn, params, *args)) == {
      "proj/w": "input", "mix/w": "hidden", "final/w": "output"}


def test_names_warn_for_a_projection_before_a_recurrent_layer():
  class ProjectedRNN(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.RNN(nn.GRUCell(8))(nn.Dense(8)(x))
      return nn.Dense(3)(x)
  apply_fn, params, args = _linen(ProjectedRNN(), _spec(2, 4, 5))
  with pytest.warns(UserWarning, match=r"guessed .*Dense_0.*Dense_1"):
    lopt.infer_roles(params)
  assert _matrices(_quietly(lopt.trace_roles, apply_fn, params, *args)) == {
      "params/Dense_0/kernel": "input", "params/Dense_1/kernel": "output"} | _prefixed(
          "params/GRUCell_0/", {path: "hidden" for path in _GRU})


def test_trace_follows_scans_over_layers_remat_while_cond_and_custom_derivatives():
  class Block(nn.Module):
    @nn.compact
    def __call__(self, x, _):
      return x + nn.Dense(8)(nn.relu(nn.Dense(8)(x))), None

  class Stacked(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Dense(8)(x)
      blocks = nn.scan(nn.remat(Block), variable_axes={"params": 0},
                       split_rngs={"params": True}, length=3)
      x, _ = blocks()(x, None)
      return nn.Dense(3)(x)
  apply_fn, params, args = _linen(Stacked(), _spec(2, 5))
  assert _matrices(_quietly(lopt.trace_roles, apply_fn, params, *args)) == {
      "params/Dense_0/kernel": "input", "params/ScanCheckpointBlock_0/Dense_0/kernel": "hidden",
      "params/ScanCheckpointBlock_0/Dense_1/kernel": "hidden", "params/Dense_1/kernel": "output"}

  @jax.custom_vjp
  def clipped(h):
    return h
  clipped.defvjp(lambda h: (h, None), lambda _, g: (jnp.clip(g, -1, 1),))

  def rnn(params, xs):
    def step(carry):
      t, h = carry
      h = jnp.tanh(xs[:, t] @ params["w_x"] + h @ params["w_h"])
      return t + 1, jax.lax.cond(t % 2 == 0, lambda h: h, lambda h: 0.5 * h, h)
    _, h = jax.lax.while_loop(lambda carry: carry[0] < xs.shape[1], step,
                              (0, jnp.zeros((xs.shape[0], 8))))
    return jax.checkpoint(jax.nn.gelu)(clipped(h)) @ params["w_y"]
  params = {"w_x": _spec(5, 8), "w_h": _spec(8, 8), "w_y": _spec(8, 3)}
  assert _quietly(lopt.trace_roles, rnn, params, _spec(2, 4, 5)) == {
      "w_x": "input", "w_h": "hidden", "w_y": "output"}


def test_trace_choices_linear_model_tied_embedding_and_coordinatewise_tables():
  linear = lambda params, x: x @ params["w"] + params["b"]
  assert _quietly(lopt.trace_roles, linear, {"w": _spec(5, 3), "b": _spec(3)}, _spec(2, 5)) == {
      "w": "input", "b": "vector"}

  class Tied(nn.Module):
    @nn.compact
    def __call__(self, tokens):
      embed = nn.Embed(11, 8)
      position = self.param("position", nn.initializers.normal(), (6, 8))
      return embed.attend(nn.relu(nn.Dense(8)(embed(tokens) + position)))
  apply_fn, params, args = _linen(Tied(), _spec(2, 6, dtype=jnp.int32))
  assert _quietly(lopt.trace_roles, apply_fn, params, *args)["params"] == {
      "Embed_0": {"embedding": "input"}, "position": "vector",
      "Dense_0": {"kernel": "hidden", "bias": "vector"}}


def test_trace_falls_back_on_names_with_a_warning_where_use_does_not_decide():
  shared = lambda params, x: jnp.tanh(x @ params["a"]) @ params["a"] @ params["readout"]
  params = {"a": _spec(5, 5), "readout": _spec(5, 3), "unused": _spec(5, 5)}
  with pytest.warns(UserWarning, match=r"\['a'\] \(reads the data and reads other layers' "
                                       r"outputs\): input; \['unused'\] \(is not used\): hidden"
                                       r".*roles="):
    roles = lopt.trace_roles(shared, params, _spec(2, 5))
  assert roles == {"a": "input", "readout": "output", "unused": "hidden"}


def test_trace_passes_arguments_that_are_not_arrays_as_they_are():
  class Dropped(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
      x = nn.Dropout(0.5, deterministic=not train)(nn.relu(nn.Dense(8)(x)))
      return nn.Dense(3)(x)
  variables = jax.eval_shape(lambda key, x: Dropped().init(key, x, train=False), KEY, _spec(2, 5))
  roles = _quietly(lopt.trace_roles, Dropped().apply, variables, _spec(2, 5), train=False)
  assert _matrices(roles) == {"params/Dense_0/kernel": "input", "params/Dense_1/kernel": "output"}
