"""The direction-only orthogonalised learned optimizer ("ortho_mlp") over a mixture of architectures.

    python -m metatrain --config configs/ortho.py

The learned network sets only the direction of each update; the learning rate (``lopt.learning_rate``,
the peak of a warmup + cosine schedule over each training) and the weight decay come from outside, so
meta-training holds them fixed and the card records them as the optimizer's defaults. Members: MLP
classifiers of widths 32 and 128 (two hidden layers), a small CNN on scikit-learn's digits with
per-task data subsets, label noise and input scales, and a one-block character transformer on the
Python documentation shipped with the interpreter. Persistent ES over trainings of 200 to 600 steps (log-uniform);
losses divided by each task's initial loss so that members weigh alike.
"""

from ml_collections import ConfigDict

# Weight-scale reparameterisation: each task stores its parameters divided by a factor log-uniform in
# param_scale_range (a task of another effective learning rate; see tasks.reparameterization).
_SCALES = dict(param_scale_range=(0.5, 2.0))
_VARIATION = dict(dataset="digits", batch_size=128, min_subset=0.5, label_noise=0.05,
                  input_scale=2.0, **_SCALES)


def get_config() -> ConfigDict:
  config = ConfigDict()
  config.name = "ortho"  # The run directory is <workdir>/<name>.
  config.seed = 0

  config.task = ConfigDict(dict(name="mixture", members=ConfigDict(dict(
      mlp_w32=ConfigDict(dict(name="mlp_classifier", weight=1.0, hidden_sizes=(32, 32),
                              **_VARIATION)),
      mlp_w128=ConfigDict(dict(name="mlp_classifier", weight=1.0, hidden_sizes=(128, 128),
                               **_VARIATION)),
      cnn_w8=ConfigDict(dict(name="cnn_classifier", weight=1.0, width=8, depth=2, base_width=8,
                             **_VARIATION)),
      char_lm_w32=ConfigDict(dict(name="char_lm", weight=1.0, width=32, depth=1, num_heads=2,
                                  base_width=32, **_SCALES)),
  ))))
  config.lopt = ConfigDict(dict(name="ortho_mlp", hidden_size=8, num_hidden_layers=2,
                                learning_rate=3e-3, warmup_fraction=0.05, weight_decay=0.0))
  config.estimator = ConfigDict(dict(name="pes", population=16, unroll_length=20, horizon=600,
                                     min_horizon=200, sigma=0.01, loss_clip=10.0,
                                     meta_loss="train", normalization="relative",
                                     loss_weight_power=0.0, remat=False, shaping="none",
                                     horizon_sampling="log_uniform"))
  # μLO's outer loop: AdamW, warmup then cosine, the global-norm clip applied to its update.
  config.outer = ConfigDict(dict(steps=3000, learning_rate=3e-3, max_grad_norm=1.0,
                                 init_from="", max_seconds=0.0, schedule="warmup_cosine",
                                 warmup_steps=100, final_learning_rate=1e-3, weight_decay=1e-4,
                                 clip="update"))
  config.checkpoint_every = 50

  config.eval = ConfigDict(dict(num_seeds=8, baselines=("adamw", "muon"),
                                validate_every=0, validation_seeds=8))
  config.distributed = ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0))
  config.wandb = ConfigDict(dict(enabled=False, project="learned-optimizers"))
  return config
