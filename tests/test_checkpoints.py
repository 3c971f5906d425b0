"""The learned optimizers shipped in checkpoints/: they load by name, train, and match their cards."""

import jax
import numpy as np
import pytest

import lopt
import tasks
from metatrain import evaluate, suites
from test_lopt import _train as train_in_plain_optax

SHIPPED = lopt.pretrained_names()


def test_the_mulo_and_the_splo_ship():
  assert {"mulo-digits-mlp", "splo-digits-mlp", "mulo-digits-mlp-h2000", "splo-digits-mlp-h2000",
          "mulo-digits-mlp-h2000-late", "splo-digits-mlp-h2000-late"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_optimizer_trains_a_model_in_a_plain_optax_loop(name):
  family = tasks.MLPClassifierFamily(hidden_sizes=(32, 32), batch_size=64)
  task = family.task(family.sample(jax.random.PRNGKey(0)), family.data())
  # An optimizer whose learning rate comes from outside gets one for a 60-step training, as AdamW
  # would (its card's default is for the hundreds of steps it was meta-trained on).
  takes_learning_rate = getattr(lopt.ARCHITECTURES[lopt.read_card(
      lopt.shipped.CHECKPOINTS / name)["architecture"]], "takes_learning_rate", False)
  tx = lopt.pretrained(name, num_steps=60, roles="infer",
                       **({"learning_rate": 1e-2} if takes_learning_rate else {}))
  losses = train_in_plain_optax(task, tx, 60)
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_a_card_evaluation_number_is_reproduced(name):
  """Re-runs the learned optimizer on one in-distribution task with the card's seeds.

  Some cards were evaluated on a GPU (the suite's ``device`` says which): hundreds of training
  steps amplify the different float summation order of a CPU into 10-15% differences of the mean
  final loss of 3 seeds (whose seed-to-seed spread is about 35%), hence the loose tolerance; an
  untrained theta is several times worse."""
  card = lopt.read_card(lopt.shipped.CHECKPOINTS / name)
  evaluation = card["metadata"]["evaluation"]
  spec = next(s for s in suites.meta_training_tasks(card) if s.name == "mlp_w32")
  keys = evaluate.eval_keys(0, evaluation["seeds"])
  result = evaluate.evaluate_task(spec, evaluate.LEARNED, evaluate.default_config(),
                                  lopt.shipped.CHECKPOINTS / name, keys)
  expected = evaluation["suites"]["in-distribution"]["tasks"]["mlp_w32"]["learned_train_loss"]
  np.testing.assert_allclose(np.mean(result["final"]["train_loss"]), expected, rtol=0.25)
