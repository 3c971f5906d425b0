"""μLO vs SP-LO: meta-train on digits MLPs of three widths, in μP (μLO) or standard (SP-LO) form.

    python -m metatrain --config configs/width_mixture.py:mup   # a μLO ("mu_mlp") on μP MLPs
    python -m metatrain --config configs/width_mixture.py:sp    # an SP-LO ("mlp") on SP MLPs

Both variants share everything else (tasks, LO network size, estimator, budget), so that their
difference is the parametrisation alone, as in the μLO paper's comparison. Members: two-hidden-layer
MLP classifiers of widths 32, 64 and 128 (base width 32) on scikit-learn's digits, with per-task
data subsets, label noise and input scales; Persistent ES over inner trainings of 100 to 400 steps;
losses divided by each task's initial loss so that widths weigh alike (each step of a training
alike: ``loss_weight_power=0``, as the shipped optimizers were meta-trained).
"""

from ml_collections import ConfigDict

WIDTHS = (32, 64, 128)
VARIANTS = {"mup": "mu_mlp", "sp": "mlp"}  # Task parametrisation -> learned-optimizer architecture.


def get_config(parametrization: str = "mup") -> ConfigDict:
  if parametrization not in VARIANTS:
    raise ValueError(f"unknown variant '{parametrization}'; valid choices: {sorted(VARIANTS)}")
  config = ConfigDict()
  config.name = f"width_mixture_{parametrization}"  # The run directory is <workdir>/<name>.
  config.seed = 0

  config.task = ConfigDict(dict(name="mixture", members=ConfigDict({
      f"mlp_w{width}": ConfigDict(dict(
          name="mlp_classifier", weight=1.0, dataset="digits", hidden_sizes=(width, width),
          base_width=WIDTHS[0], parametrization=parametrization, batch_size=128, min_subset=0.5,
          label_noise=0.05, input_scale=2.0))
      for width in WIDTHS})))
  config.lopt = ConfigDict(dict(name=VARIANTS[parametrization], hidden_size=32,
                                num_hidden_layers=2, step_scales=()))
  config.estimator = ConfigDict(dict(name="pes", population=24, unroll_length=20, horizon=400,
                                     min_horizon=100, sigma=0.01, loss_clip=10.0,
                                     meta_loss="train", normalization="relative",
                                     loss_weight_power=0.0, remat=False, shaping="none",
                                     horizon_sampling="uniform"))
  config.outer = ConfigDict(dict(steps=5000, learning_rate=1e-3, max_grad_norm=1.0,
                                 init_from="", max_seconds=0.0, schedule="constant",
                                 warmup_steps=0, final_learning_rate=0.0, weight_decay=0.0,
                                 clip="gradient"))
  config.checkpoint_every = 250

  config.eval = ConfigDict(dict(num_seeds=8, baselines=("adamw", "muon"),
                                validate_every=0, validation_seeds=8))
  config.distributed = ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0))
  config.wandb = ConfigDict(dict(enabled=True, project="learned-optimizers"))
  return config
