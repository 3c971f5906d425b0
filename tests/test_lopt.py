"""The learned optimizer as users see it: the optax export, saving and loading."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
import tasks


def _digits_task():
  family = tasks.MLPClassifierFamily(hidden_sizes=(32,))
  return family.task(family.sample(jax.random.PRNGKey(0)), family.data())


def _train(task, tx, num_steps, key=jax.random.PRNGKey(1)):
  """A plain optax training loop; returns the losses."""
  params = task.init(key)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch_key):
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(batch_key, "train"))
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for i in range(num_steps):
    params, opt_state, loss = step(params, opt_state, jax.random.PRNGKey(100 + i))
    losses.append(float(loss))
  return np.array(losses)


def test_export_gives_the_same_updates_as_the_internal_call():
  task = _digits_task()
  lo = lopt.MLPLOpt()
  theta = lo.init_meta_params(jax.random.PRNGKey(2))
  params = task.init(jax.random.PRNGKey(3))
  tx = lopt.as_optax(lo, theta, num_steps=100)
  tx_state, lo_state = tx.init(params), lo.init(theta, params, 100)
  for i in range(3):
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(jax.random.PRNGKey(i), "train"))
    tx_updates, tx_state = tx.update(grads, tx_state, params, value=loss)
    lo_updates, lo_state = lo.update(theta, lo_state, grads, params, loss)
    jax.tree.map(np.testing.assert_array_equal, tx_updates, lo_updates)
    params = optax.apply_updates(params, tx_updates)


def test_initial_theta_trains_a_haiku_model_in_a_plain_optax_loop():
  lo = lopt.MLPLOpt()
  tx = lopt.as_optax(lo, lo.init_meta_params(jax.random.PRNGKey(0)), num_steps=150)
  losses = _train(_digits_task(), tx, 150)
  assert losses[-10:].mean() < 0.5 * losses[:5].mean()


def test_export_composes_with_optax_chain():
  lo = lopt.MLPLOpt()
  theta = lo.init_meta_params(jax.random.PRNGKey(0))
  tx = optax.chain(optax.clip_by_global_norm(1.0), lopt.as_optax(lo, theta, 150),
                   optax.add_decayed_weights(1e-4), optax.scale_by_schedule(lambda t: 1.0))
  losses = _train(_digits_task(), tx, 150)
  assert losses[-10:].mean() < 0.5 * losses[:5].mean()


def test_updates_keep_parameter_dtypes_and_steps_past_the_horizon_act_as_the_last_step():
  lo = lopt.MLPLOpt()
  theta = lo.init_meta_params(jax.random.PRNGKey(0))
  params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.ones((3,), jnp.float32)}
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
  state = lo.init(theta, params, num_steps=10)
  updates, _ = lo.update(theta, state, grads, params)
  assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
  at_end, _ = lo.update(theta, state._replace(step=jnp.int32(10)), grads, params)
  past_end, _ = lo.update(theta, state._replace(step=jnp.int32(50)), grads, params)
  jax.tree.map(np.testing.assert_array_equal, at_end, past_end)


def test_save_then_load_gives_the_same_updates(tmp_path):
  task = _digits_task()
  lo = lopt.MLPLOpt(hidden_size=16)
  theta = lo.init_meta_params(jax.random.PRNGKey(5))
  lopt.save(tmp_path / "lo", lo, theta, {"num_steps": 50, "note": "test"})
  loaded_lo, loaded_theta, card = lopt.load_meta_params(tmp_path / "lo")
  assert loaded_lo == lo and card["metadata"]["note"] == "test"
  jax.tree.map(np.testing.assert_array_equal, loaded_theta, theta)
  original, loaded = lopt.as_optax(lo, theta, 50), lopt.load(tmp_path / "lo")
  params = task.init(jax.random.PRNGKey(0))
  grads = jax.grad(task.loss)(params, task.batch(jax.random.PRNGKey(1), "train"))
  expected, _ = original.update(grads, original.init(params), params)
  got, _ = loaded.update(grads, loaded.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, got, expected)


@pytest.mark.parametrize("architecture", ["mlp", "adafac_mlp", "mu_mlp"])
def test_step_scale_features_count_steps_whatever_the_planned_length(architecture, tmp_path):
  step, step_scales = jnp.int32(30), (10.0, 100.0)
  short, long = (lopt.features.time_features(step, n, (1.0, 3.0), step_scales) for n in (60, 600))
  np.testing.assert_allclose(short[2:], np.tanh([3.0, 0.3]), rtol=1e-6)
  np.testing.assert_array_equal(short[2:], long[2:])
  np.testing.assert_allclose(short[:2], np.tanh([0.5, 1.5]), rtol=1e-6)  # Fractions of training.
  assert not np.allclose(short[:2], long[:2])

  lo = lopt.make(architecture, hidden_size=8, step_scales=step_scales)
  assert lo.num_features == lopt.make(architecture, hidden_size=8).num_features + 2
  lopt.save(tmp_path / "lo", lo, lo.init_meta_params(jax.random.PRNGKey(0)), {"num_steps": 50})
  assert lopt.load_meta_params(tmp_path / "lo")[0] == lo
  losses = _train(_digits_task(), lopt.load(tmp_path / "lo", 150), 150)
  assert losses[-10:].mean() < 0.5 * losses[:5].mean()
  with pytest.raises(ValueError, match="step_scales must be positive"):
    lopt.make(architecture, step_scales=(0.0,))


@pytest.fixture
def saved(tmp_path):
  lo = lopt.MLPLOpt(hidden_size=8)
  return lopt.save(tmp_path / "lo", lo, lo.init_meta_params(jax.random.PRNGKey(0)),
                   {"num_steps": 10})


def test_loading_a_missing_checkpoint_fails_clearly(tmp_path):
  with pytest.raises(lopt.CheckpointError, match="no learned optimizer at"):
    lopt.load(tmp_path / "nothing-here")


def test_loading_a_truncated_checkpoint_fails_clearly(saved):
  card = saved / "card.json"
  card.write_text(card.read_text()[:40])
  with pytest.raises(lopt.CheckpointError, match="not valid JSON"):
    lopt.load(saved)


def test_loading_checkpoint_with_missing_arrays_fails_clearly(saved):
  for path in (saved / "theta").rglob("*"):
    if path.is_file() and "METADATA" not in path.name:
      path.write_bytes(b"")
  with pytest.raises(lopt.CheckpointError, match="cannot read the meta-parameters"):
    lopt.load(saved)
  shutil.rmtree(saved / "theta")
  with pytest.raises(lopt.CheckpointError, match="no meta-parameters"):
    lopt.load(saved)


def test_loading_arrays_of_another_architecture_fails_clearly(saved):
  card = json.loads((saved / "card.json").read_text())
  card["hyperparameters"]["hidden_size"] = 16  # The stored theta has hidden size 8.
  (saved / "card.json").write_text(json.dumps(card))
  with pytest.raises(lopt.CheckpointError, match="do not fit"):
    lopt.load(saved)
  with pytest.raises(lopt.CheckpointError, match="not the 'velo' asked for"):
    lopt.load_meta_params(saved, expected_architecture="velo")
  card["architecture"] = "velo"
  (saved / "card.json").write_text(json.dumps(card))
  with pytest.raises(lopt.CheckpointError, match=r"unknown learned optimizer 'velo'; valid choices"):
    lopt.load(saved)


def test_save_leaves_nothing_half_written_when_metadata_is_not_json(tmp_path):
  lo = lopt.MLPLOpt(hidden_size=8)
  with pytest.raises(TypeError):
    lopt.save(tmp_path / "lo", lo, lo.init_meta_params(jax.random.PRNGKey(0)), {"bad": object()})
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kernel", ["elementwise", "xla", "pallas"])
def test_every_mlp_kernel_gives_the_network_of_each_tensor_rows(kernel):
  """Tensors of several shapes, with scalar inputs (per-tensor constants such as time features)
  among the arrays: every kernel's outputs equal ``per_param_mlp.apply`` on that tensor's rows."""
  num_arrays, num_scalars = 12, 3
  theta = lopt.per_param_mlp.init(jax.random.PRNGKey(0), num_arrays + num_scalars, 32, 2, 3)
  theta = jax.tree.map(lambda w: w + 0.1 * jnp.cos(w), theta)  # Every weight matters.
  keys = iter(jax.random.split(jax.random.PRNGKey(1), 3 * (num_arrays + num_scalars)))
  inputs = [[jax.random.normal(next(keys), shape) for _ in range(num_arrays)]
            + [jax.random.normal(next(keys), ()) for _ in range(num_scalars)]
            for shape in [(5, 7), (7,), (2, 3, 4)]]
  outputs = lopt.mlp_kernels.apply_to_tensors(theta, inputs, kernel)
  for tensor, out in zip(inputs, outputs):
    rows = lopt.mlp_kernels.stack_rows(tensor)
    expected = lopt.per_param_mlp.apply(theta, rows).reshape(tensor[0].shape + (2,))
    np.testing.assert_allclose(jnp.stack(out, -1), expected, rtol=1e-5, atol=1e-5)


def test_the_elementwise_network_has_the_gradients_of_the_matmul_network():
  """What truncated backprop through the optimizer differentiates."""
  theta = lopt.per_param_mlp.init(jax.random.PRNGKey(0), 6, 8, 2, 3)
  theta = jax.tree.map(lambda w: w + 0.1 * jnp.cos(w), theta)
  inputs = [jax.random.normal(k, (9, 4)) for k in jax.random.split(jax.random.PRNGKey(1), 5)]
  inputs.append(jnp.asarray(0.3))

  def loss(kernel):
    return lambda t, x: jnp.sum(jnp.sin(jnp.stack(
        lopt.mlp_kernels.apply_to_tensors(t, [x], kernel)[0])))
  grads = {kernel: jax.grad(loss(kernel), argnums=(0, 1))(theta, inputs)
           for kernel in ("elementwise", "xla")}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               grads["elementwise"], grads["xla"])


def test_auto_picks_the_elementwise_network_on_a_cpu_and_matmuls_where_unmeasured(monkeypatch):
  assert lopt.mlp_kernels.resolve("auto") == "elementwise"  # Tests run on a CPU.
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  assert lopt.mlp_kernels.resolve("auto") == "xla"
  assert lopt.mlp_kernels.resolve("pallas") == "pallas"


def test_auto_runs_only_large_tensors_elementwise_and_gives_the_same_outputs(monkeypatch):
  monkeypatch.setattr(lopt.mlp_kernels, "ELEMENTWISE_MIN_SIZE", 20)
  theta = lopt.per_param_mlp.init(jax.random.PRNGKey(0), 3, 8, 2, 0)
  inputs = [[jax.random.normal(jax.random.PRNGKey(i), shape) for i in range(3)]
            for shape in [(5, 7), (3,), (4, 6)]]
  elementwise = []
  monkeypatch.setattr(lopt.mlp_kernels, "elementwise",
                      lambda *args: elementwise.append(args[1][0].shape) or
                      lopt.per_param_mlp.apply_elementwise(*args))
  outputs = lopt.mlp_kernels.apply_to_tensors(theta, inputs, "auto")
  assert elementwise == [(5, 7), (4, 6)]  # The (3,) vector went through the matmuls.
  for tensor, out in zip(inputs, outputs):
    expected = lopt.per_param_mlp.apply(theta, lopt.mlp_kernels.stack_rows(tensor))
    np.testing.assert_allclose(jnp.stack(out, -1), expected.reshape(tensor[0].shape + (2,)),
                               rtol=1e-5, atol=1e-5)


def test_a_bfloat16_network_gives_float32_updates_close_to_the_float32_network():
  params = _digits_task().init(jax.random.PRNGKey(3))
  grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, params)
  updates = {}
  for dtype in ("float32", "bfloat16"):
    lo = lopt.MLPLOpt(mlp_dtype=dtype)
    theta = lo.init_meta_params(jax.random.PRNGKey(0))
    updates[dtype], _ = lo.update(theta, lo.init(theta, params, 10), grads, params)
  for low, high in zip(jax.tree.leaves(updates["bfloat16"]), jax.tree.leaves(updates["float32"])):
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, high, rtol=0.05, atol=0.02 * float(jnp.abs(high).max()))


def test_unknown_mlp_dtype_is_rejected_with_the_valid_choices():
  with pytest.raises(ValueError, match="float16.*valid: float32, bfloat16"):
    lopt.MLPLOpt(mlp_dtype="float16")


@pytest.mark.parametrize("num_features", [19, 40])  # Padded to 32 and 64 features.
def test_the_fused_pallas_network_gives_the_xla_network_and_its_gradients(num_features):
  theta = lopt.per_param_mlp.init(jax.random.PRNGKey(0), num_features, 32, 2, 3)
  theta = jax.tree.map(lambda w: w + 0.1 * jnp.cos(w), theta)
  rows = jax.random.normal(jax.random.PRNGKey(1), (700, num_features))  # Not a block multiple.
  # On a CPU both networks multiply in float32. On a GPU both multiply float32 matrices in TF32 by
  # default (XLA's and Triton's), whose 10-bit mantissa rounds each product by up to ~1e-3
  # relative: on an H200 the outputs differed by up to 1.2e-3 relative and 4.8e-3 absolute.
  exact = jax.default_backend() == "cpu"
  tolerance = lambda atol: dict(rtol=1e-5, atol=atol) if exact else dict(rtol=5e-3, atol=1e-2)
  np.testing.assert_allclose(lopt.fused_mlp.apply(theta, rows),
                             lopt.per_param_mlp.apply(theta, rows), **tolerance(1e-6))
  loss = lambda network: lambda t, x: jnp.sum(jnp.sin(network(t, x)))
  fused = jax.grad(loss(lopt.fused_mlp.apply), argnums=(0, 1))(theta, rows)
  reference = jax.grad(loss(lopt.per_param_mlp.apply), argnums=(0, 1))(theta, rows)
  # Both backward passes are XLA's; their cotangents differ by the forward's rounding.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tolerance(2e-5)), fused, reference)


@pytest.mark.parametrize("num_features", [7, 19, 40])
def test_the_fused_pallas_network_lowers_to_a_triton_kernel_for_a_gpu(num_features, monkeypatch):
  """Lowered for CUDA on this CPU: the kernel passes Pallas's Triton lowering (arrays of power-of-two
  sides; Triton's backend, not Mosaic GPU's). Triton's own compilation needs a GPU."""
  monkeypatch.setattr(lopt.fused_mlp, "interpret", lambda: False)
  theta = lopt.per_param_mlp.init(jax.random.PRNGKey(0), num_features, 32, 2, 0)
  lowered = jax.jit(lopt.fused_mlp.apply).trace(theta, jnp.ones((700, num_features))).lower(
      lowering_platforms=("cuda",))
  assert "xla.gpu.triton" in lowered.as_text()


@pytest.mark.parametrize("name", lopt.ARCHITECTURES)
def test_every_architecture_gives_the_same_updates_with_every_mlp_kernel(name):
  """Three steps (the network's outputs feed the state) of every architecture, including the
  orthogonalised one's Newton-Schulz step, with each kernel that can run its network."""
  params = _digits_task().init(jax.random.PRNGKey(3))
  updates = {}
  for kernel in ("xla", "elementwise", "pallas"):
    try:
      lo = lopt.make(name, mlp_kernel=kernel)
    except ValueError:  # The Pallas kernel needs a hidden size of at least 16.
      continue
    theta = jax.tree.map(lambda w: w + 0.05 * jnp.cos(w), lo.init_meta_params(jax.random.PRNGKey(0)))
    state, update = lo.init(theta, params, 10), jax.jit(lo.update)
    for step in range(3):
      grads = jax.tree.map(lambda p: jnp.cos(3.0 * p + step) + 0.1, params)
      updates[kernel], state = update(theta, state, grads, params, loss=jnp.asarray(1.0 - step / 4))
  assert len(updates) >= 2
  reference = updates.pop("xla")
  for other in updates.values():
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, rtol=1e-4, atol=1e-6 * float(jnp.abs(b).max())), other, reference)


@pytest.mark.parametrize("settings,message", [
    (dict(mlp_kernel="triton"), "unknown MLP kernel 'triton'; valid: auto, elementwise, xla, pallas"),
    (dict(mlp_kernel="pallas", mlp_dtype="bfloat16"), "computes in float32"),
    (dict(mlp_kernel="pallas", hidden_size=24), "power of two and at least 16, got 24")])
def test_unsupported_pallas_network_settings_are_rejected(settings, message):
  with pytest.raises(ValueError, match=message):
    lopt.MLPLOpt(**settings)
