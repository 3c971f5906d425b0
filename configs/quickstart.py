"""Quickstart: meta-train a learned optimizer on digits MLPs with truncated ES (minutes on 2 CPU cores).

Run with ``python -m metatrain --config configs/quickstart.py``; override any value on the command
line, e.g. ``--config.outer.steps=50``. Two variants (``configs/quickstart.py:<variant>``):

- ``ortho`` (the default): the direction-only orthogonalised optimizer (``lopt.OrthoMLPLOpt``),
  whose learning rate comes from outside, meta-trained with sign-shaped antithetic pairs on the
  late-weighted log loss;
- ``mlp``: a small_fc_lopt-style per-parameter MLP that learns its own step size (the tests' base
  config).
"""

from ml_collections import ConfigDict

VARIANTS = ("ortho", "mlp")


def get_config(variant: str = "ortho") -> ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant '{variant}'; valid choices: {list(VARIANTS)}")
  config = ConfigDict()
  config.name = "quickstart"  # The run directory is <workdir>/<name>.
  config.seed = 0

  # The meta-training task distribution: MLP classifiers on scikit-learn's bundled digits.
  # Other datasets: mnist | fashion_mnist | cifar10 from TensorFlow Datasets prepared in data_dir
  # ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets), resized to image_size (0 = native) and
  # normalised (unit: [0, 1] | standardize: per channel, from the training split).
  # param_scale_range (low, high): each task stores its parameters divided by a factor log-uniform in
  # [low, high] and its loss multiplies them back (tasks.reparameterization; (1.0, 1.0): off).
  config.task = ConfigDict(dict(name="mlp_classifier", dataset="digits", hidden_sizes=(32,),
                                batch_size=128, data_dir="", image_size=0,
                                image_normalization="unit", train_split="train",
                                test_split="test", param_scale_range=(1.0, 1.0)))
  # The learned optimizer: the direction-only orthogonalised MLP (its learning rate is the peak of a
  # warmup + cosine schedule over each training), or a small_fc_lopt-style per-parameter MLP.
  # mlp_kernel: how the LO's network runs (lopt.mlp_kernels); "auto" is the fastest measured here.
  config.lopt = ConfigDict(dict(name="ortho_mlp", hidden_size=8, num_hidden_layers=2,
                                learning_rate=1e-2, warmup_fraction=0.05, weight_decay=0.0,
                                mlp_kernel="auto"))
  if variant == "mlp":
    config.lopt = ConfigDict(dict(name="mlp", hidden_size=32, num_hidden_layers=2,
                                  mlp_kernel="auto"))
  # The meta-gradient estimator (truncated_es | pes | nres | tbptt | full_es) over a population of
  # inner trainings of `horizon` steps cut into unrolls (min_horizon > 0: each training's length is
  # drawn from the multiples of unroll_length in [min_horizon, horizon], horizon_sampling: uniform |
  # log_uniform); meta_loss: train | held_out, normalised per task by its initial loss
  # (normalization: none | relative | log_relative); loss_weight_power p weights step t of a T-step
  # training by (p + 1)(t / T)^p (0: the mean loss; > 0: late losses count more, see
  # metatrain.inner_training); remat: tbptt only; shaping (ES estimators): none | sign |
  # centered_rank replaces each antithetic pair's loss difference (see metatrain.es).
  config.estimator = ConfigDict(dict(name="truncated_es", population=16, unroll_length=20,
                                     horizon=200, min_horizon=0, sigma=0.01, loss_clip=10.0,
                                     meta_loss="train", normalization="none",
                                     loss_weight_power=0.0, remat=False, shaping="none",
                                     horizon_sampling="uniform"))
  if variant == "ortho":
    config.estimator.update(normalization="log_relative", loss_weight_power=2.0, shaping="sign")
  # The meta-optimizer: Adam on theta (weight_decay > 0: AdamW), with the meta-gradient (clip=
  # "gradient") or the update (clip="update") clipped by global norm, at a constant learning rate or
  # (schedule="warmup_cosine") warmed up over warmup_steps and decayed to final_learning_rate (see
  # metatrain.meta_optimizer). init_from: a shipped optimizer's name or a lopt.save directory to
  # start theta from (fine-tuning; "": fresh). max_seconds > 0: stop this process's meta-training
  # after that many seconds (a machine lent for a while), checkpoint and export as at the last step;
  # --resume continues it later (0: no limit).
  config.outer = ConfigDict(dict(steps=1000, learning_rate=3e-3, max_grad_norm=1.0,
                                 init_from="", max_seconds=0.0, schedule="constant",
                                 warmup_steps=0, final_learning_rate=0.0, weight_decay=0.0,
                                 clip="gradient"))
  if variant == "ortho":  # μLO's outer loop: AdamW, warmup then cosine, the update clipped.
    config.outer.update(steps=500, learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=50,
                        final_learning_rate=3e-4, clip="update")
  config.checkpoint_every = 50

  # Evaluation of the saved optimizer on num_seeds held-out tasks of every member against the
  # baselines (lopt.make_baseline names), each tuned per task on the grids and warmup + cosine
  # schedule of every evaluation suite (metatrain.evaluate.default_config).
  # validate_every > 0: every that many outer steps, score theta on validation_seeds other tasks
  # of each member and export the best theta instead of the last (see metatrain.selection).
  config.eval = ConfigDict(dict(num_seeds=8, baselines=("adamw", "muon"),
                                validate_every=0, validation_seeds=8))
  # Multi-host runs: one process per host, all started with the same command plus their process_id.
  config.distributed = ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0))
  config.wandb = ConfigDict(dict(enabled=True, project="learned-optimizers"))
  return config
