"""Pretrained optimizers by name: ``lopt.pretrained`` and ``lopt.pretrained_names`` over a folder of
optimizers saved by ``lopt.save`` (a temporary one here; tests/test_checkpoints.py loads the shipped
ones, tests/test_packaging.py those of an installed wheel)."""

import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from conftest import REPO
from lopt.shipped import CHECKPOINTS


@pytest.fixture(scope="module")
def shelf(tmp_path_factory):
  """A folder with two saved optimizers and a stray directory that holds none."""
  tmp_path = tmp_path_factory.mktemp("shelf")
  for name, lo in (("small_mlp", lopt.MLPLOpt(hidden_size=4)),
                   ("mu_adafac", lopt.MuAdafacMLPLOpt(base_fan_in=8))):
    lopt.save(tmp_path / name, lo, jax.jit(lo.init_meta_params)(jax.random.PRNGKey(0)),
              {"num_steps": 20})
  (tmp_path / "notes").mkdir()
  return tmp_path


def test_names_list_the_saved_optimizers(shelf, tmp_path_factory):
  assert lopt.pretrained_names(shelf) == ["mu_adafac", "small_mlp"]
  assert lopt.pretrained_names(tmp_path_factory.mktemp("empty") / "missing") == []
  assert CHECKPOINTS == REPO / "checkpoints"  # The default: what ships with the repository.


def test_pretrained_returns_what_load_returns(shelf):
  params = {"hidden": {"w": jnp.ones((16, 16)), "b": jnp.ones(16)}}
  roles = {"hidden": {"w": "hidden", "b": "vector"}}
  grads = jax.tree.map(lambda p: jnp.linspace(-1, 1, p.size).reshape(p.shape), params)
  first_update = lambda tx: tx.update(grads, tx.init(params), params)[0]
  for name, num_steps in (("small_mlp", None), ("mu_adafac", 100)):
    by_name = lopt.pretrained(name, num_steps=num_steps, roles=roles, directory=shelf)
    by_path = lopt.load(shelf / name, num_steps=num_steps, roles=roles)
    expected, got = jax.jit(lambda: (first_update(by_path), first_update(by_name)))()
    jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_unknown_names_fail_listing_the_shipped_ones(shelf, tmp_path_factory):
  with pytest.raises(lopt.CheckpointNotFoundError,
                     match=r"unknown pretrained learned optimizer 'notes' in .*; "
                           r"valid names: \['mu_adafac', 'small_mlp'\]"):
    lopt.pretrained("notes", directory=shelf)
  with pytest.raises(lopt.CheckpointNotFoundError, match="none ship yet"):
    lopt.pretrained("small_mlp", directory=tmp_path_factory.mktemp("empty"))


def test_pretrained_and_load_raise_the_same_errors(shelf, tmp_path):
  """A missing optimizer: ``CheckpointNotFoundError``, a ``FileNotFoundError`` and a ``ValueError``
  (as every ``CheckpointError``); one that does not load: ``CheckpointError``, from both."""
  with pytest.raises(lopt.CheckpointNotFoundError) as by_name:
    lopt.pretrained("notes", directory=shelf)
  with pytest.raises(lopt.CheckpointNotFoundError,
                     match=re.escape(f"load a shipped one by name with lopt.pretrained: "
                                     f"{lopt.pretrained_names()}")) as by_path:
    lopt.load(shelf / "notes")
  for error in (by_name.value, by_path.value):
    assert isinstance(error, FileNotFoundError) and isinstance(error, lopt.CheckpointError)
    assert isinstance(error, ValueError)
  shutil.copytree(shelf / "small_mlp", tmp_path / "broken")
  (tmp_path / "broken" / "card.json").write_text("{")
  for broken in (lambda: lopt.pretrained("broken", directory=tmp_path),
                 lambda: lopt.load(tmp_path / "broken")):
    with pytest.raises(lopt.CheckpointError, match="is not valid JSON") as error:
      broken()
    assert not isinstance(error.value, FileNotFoundError)
