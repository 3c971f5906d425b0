"""Meta-train on a mixture of offline task families: digits MLPs, digits CNNs and character LMs.

Run with ``python -m metatrain --config configs/mixture.py``; every value can be overridden on the
command line, e.g. ``--config.task.members.cnn.width=32``.
``config.task`` names the mixture; each member group gives a registered family ``name``, its
``weight`` (its share of the population, apportioned by ``tasks.Mixture.slice_sizes``) and the
family's settings; ``metatrain.config.build_task_family`` builds it, checking every member.
"""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
  config = ConfigDict()
  config.name = "mixture"  # The run directory is <workdir>/<name>.
  config.seed = 0

  # The meta-training task distribution: three families on data that ships offline, all in muP
  # with per-task data subsets, label noise and input scales where the family has them.
  config.task = ConfigDict(dict(name="mixture", members=ConfigDict(dict(
      mlp=ConfigDict(dict(name="mlp_classifier", weight=1.0, dataset="digits", hidden_sizes=(64,),
                          base_width=64, parametrization="mup", batch_size=128, min_subset=0.5,
                          label_noise=0.1, input_scale=2.0)),
      cnn=ConfigDict(dict(name="cnn_classifier", weight=1.0, dataset="digits", width=16, depth=2,
                          base_width=16, parametrization="mup", batch_size=64, min_subset=0.5,
                          label_noise=0.1, input_scale=2.0)),
      lm=ConfigDict(dict(name="char_lm", weight=1.0, corpus="python_docs", width=32, depth=1,
                         num_heads=2, base_width=32, parametrization="mup", sequence_length=32,
                         batch_size=16, min_subset=0.5)),
  ))))
  # The learned optimizer: a small_fc_lopt-style per-parameter MLP.
  config.lopt = ConfigDict(dict(name="mlp", hidden_size=32, num_hidden_layers=2))
  # Antithetic truncated ES; the population is shared among the members by weight (4 each). Each
  # training lasts 100 to 200 steps, and losses are divided by the task's initial loss so that
  # members of different loss scales weigh alike in the meta-loss.
  config.estimator = ConfigDict(dict(name="truncated_es", population=12, unroll_length=20,
                                     horizon=200, min_horizon=100, sigma=0.01, loss_clip=10.0,
                                     meta_loss="train", normalization="relative",
                                     loss_weight_power=0.0, remat=False, shaping="none",
                                     horizon_sampling="uniform"))
  # The meta-optimizer: Adam on theta, with the meta-gradient clipped by global norm. init_from: a
  # shipped optimizer's name or a lopt.save directory to start theta from (fine-tuning; "": fresh).
  # max_seconds > 0: stop this process's meta-training after that many seconds (a machine lent for
  # a while), checkpoint and export as at the last step; --resume continues it later (0: no limit).
  config.outer = ConfigDict(dict(steps=1000, learning_rate=3e-3, max_grad_norm=1.0,
                                 init_from="", max_seconds=0.0, schedule="constant",
                                 warmup_steps=0, final_learning_rate=0.0, weight_decay=0.0,
                                 clip="gradient"))
  config.checkpoint_every = 50

  # Evaluation on held-out tasks of every member against tuned AdamW and Muon (configs/quickstart.py).
  config.eval = ConfigDict(dict(num_seeds=8, baselines=("adamw", "muon"),
                                validate_every=0, validation_seeds=8))
  config.distributed = ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0))
  config.wandb = ConfigDict(dict(enabled=True, project="learned-optimizers"))
  return config
