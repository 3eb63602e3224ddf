"""Defaults every config starts from; a config file overrides sections of it.

Each entry can also be overridden on the command line: ``--config.optim.lr=1e-4``.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict(dict(name='digits', batch_size=128))

  # The trained network (for distillation rules: the student); see fastgen.networks.
  config.network = ml_collections.ConfigDict(dict(name='mlp', parameterization='edm',
                                                  sigma_data=0.5))

  config.objective = ml_collections.ConfigDict(dict(name='edm'))

  config.teacher = ml_collections.ConfigDict(dict(
      kind='none',                 # none | analytic | checkpoint
      mixture='gmm2d',             # analytic: gmm2d | digits
      components_per_class=4,      # analytic digits mixture
      conditional=False,           # analytic: class-conditional mixture
      workdir=''))                 # checkpoint: a fastgen teacher-training workdir

  config.optim = ml_collections.ConfigDict(dict(
      lr=1e-3, warmup_steps=100, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
      decay_ends=(),               # (): constant lr; else linear decay to 0 ending at each step
      decay_per_round=False,       # decay_ends at the objective's round ends (PD, guided)
      restart_per_round=False))    # a fresh Adam state at each of the objective's rounds (PD)

  config.train = ml_collections.ConfigDict(dict(
      num_steps=1000,
      log_every=100,
      checkpoint_every=500,
      keep_checkpoints=3,
      sample_every=500,            # 0: no sample pictures during training
      ema_decay=0.999,
      skip_nonfinite=False,        # True: drop updates whose loss/grad is NaN/inf instead of stopping
      max_consecutive_skips=100))  # skip_nonfinite: stop once this many updates in a row dropped

  config.sample = ml_collections.ConfigDict(dict(
      num_steps=18,                # sampler steps (Heun: 2k - 1 network evaluations)
      num_samples=1000,            # --mode=sample
      batch_size=500,
      grid_size=100))              # pictures during training

  # In-loop evaluation (fastgen.evaluate) and --mode=eval.
  config.eval = ml_collections.ConfigDict(dict(
      every=0,                     # steps between evaluations; 0: only --mode=eval
      features='digits',           # inception | digits | exact (analytic targets)
      num_samples=2000,            # per k; FID papers use 50000 (inception)
      batch_size=500,
      steps=(1, 2, 4),             # student sampler steps k, one metric each
      teacher_steps=18,            # teacher Heun steps (2k - 1 NFE), evaluated once; 0: skip
      guidance_scale=1.0,          # the teacher sampler's classifier-free guidance; 1: unguided
      reference='',                # EDM-format .npz (mu, sigma); '': computed from config.data
      reference_num_samples=0,     # '' reference: images to use (0: the whole digits split)
      inception_weights='',        # '': $FASTGEN_INCEPTION_WEIGHTS
      num_projections=512,         # exact: sliced Wasserstein directions
      seed=0))                     # the same noise at every evaluation

  # Devices per data-parallel slice that share one copy of the parameters and optimizer state,
  # each holding 1/model of every large array (FSDP); 1 = plain data parallelism.
  config.mesh = ml_collections.ConfigDict(dict(model=1))
  config.distributed = ml_collections.ConfigDict(dict(
      enabled=False,               # jax.distributed.initialize() before anything else
      coordinator_address='',      # '' = auto-detect (TPU pods, SLURM, ...)
      num_processes=0,
      process_id=-1))
  return config
