"""Training of the texture-refinement module (SPEC 6): losses, WGAN-GP steps, optimisers,
checkpoints and the data order, for scripts/train.py.

Resumption is exact: the data order of every epoch is a function of the seed
and the epoch, a resumed run skips the batches already seen, the random numbers
of a step are stateless functions of (seed, step), and the checkpoint holds the
generator, the critic, both Adam states and the step.

Data parallelism runs through tf.distribute: every replica takes its slice of the
same global batch, the gradient of the global mean loss is all-reduced before the
per-tensor clipping, the critic's batch statistics are synchronised and the WGAN-GP
interpolation weights are the global batch's, so N replicas train as one device
does (up to floating-point summation order) for the release objective.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from gcn_face import atomic_file, critic as critic_lib, losses, optimizer, records, \
    refinement as refinement_lib, schedule as schedule_lib

RUN_CONFIG = "train_config.json"  # next to the checkpoints: how to rebuild the generator
CRITIC_MIN_LAMBDA = 1e-5  # the critic trains at steps whose lambda_ren exceeds this (release)


@dataclasses.dataclass
class Config:
  """The release's training options (SPEC 6.2-6.4) and this project's additions."""
  batch_size: int = 4
  lr: float = 1e-4
  lr_decay: float = schedule_lib.LR_DECAY  # staircase, once per schedule epoch
  schedule_epoch_steps: int = 0  # generator steps per schedule epoch; 0: one dataset pass
  schedule_start_epoch: int = 0  # the schedule epoch at step 0 (5: full weights at once)
  clip_norm: float = 5.0  # per tensor
  gan: bool = False
  adv_lambda: float = losses.ADV_LAMBDA
  critic_steps: int = 5
  per_sample_eps: bool = True  # the release drew one eps per batch
  objective: str = "release"
  lambda_sym: float = losses.LAMBDA_SYM
  lambda_id: float = losses.LAMBDA_ID
  seed: int = 2
  shuffle_buffer: int = 10  # the release's buffer


def shuffled_batches(raw, epoch, config, skip_batches=0, has_landmarks68=False,
                     input_context=None):
  """One epoch of batches of a split's serialised records, in the order of (seed, epoch),
  starting after `skip_batches` (decoding only what is used).

  input_context: a tf.distribute.InputContext: this input pipeline's rows of every global
  batch of `config.batch_size`, batched per replica, for `distribute_datasets_from_function`.
  """
  order = raw.shuffle(config.shuffle_buffer, seed=config.seed * 100_003 + epoch,
                      reshuffle_each_iteration=False)
  batches = order.batch(config.batch_size, drop_remainder=True).skip(skip_batches)
  size = config.batch_size
  if input_context is not None:
    rows = check_batch_split(size, input_context.num_input_pipelines, "input pipelines")
    first = input_context.input_pipeline_id * rows
    batches = batches.map(lambda b: b[first:first + rows])
    size = input_context.get_per_replica_batch_size(config.batch_size)
  return batches.unbatch().apply(lambda d: records.decode(d, has_landmarks68)).batch(
      size, drop_remainder=True).prefetch(2).with_options(_EPOCH_OPTIONS)


# One pipeline per epoch: tf.data's autotuning thread made every new epoch wait 0.5-1 s for
# the last one's to stop, and took ~10 % of the training steps' CPU time after that
# (docs/speed.md); the decoding runs one call per core without it.
_EPOCH_OPTIONS = tf.data.Options()
_EPOCH_OPTIONS.autotune.enabled = False


def check_batch_split(batch_size, parts, what="replicas"):
  """batch_size / parts, or ValueError when the global batch does not split evenly."""
  if batch_size % parts:
    raise ValueError(f"--batch_size {batch_size} does not split evenly over {parts} {what}")
  return batch_size // parts


def path_keys(config):
  """The run config's keys that hold file paths: the sampling cache, a .mat face model."""
  return [k for k in ("sampling_dir", "face_model")
          if isinstance(config.get(k), str) and (k == "sampling_dir" or
                                                 config[k].endswith(".mat"))]


def write_run_config(checkpoint_dir, config):
  """Writes the options that rebuild the generator (face model, MeshGenerator flags, identity
  encoder) next to the checkpoints; paths relative to the checkpoint folder, so that the
  folders can move together."""
  config = dict(config)
  for key in path_keys(config):
    config[key] = os.path.relpath(os.path.abspath(config[key]), os.path.abspath(checkpoint_dir))
  atomic_file.write_json(os.path.join(checkpoint_dir, RUN_CONFIG), config)


def read_run_config(checkpoint_dir):
  """The dict of write_run_config, paths resolved against the checkpoint folder (absolute
  ones, from older runs, as they are); ValueError naming the file when it is missing or
  bad."""
  path = os.path.join(checkpoint_dir, RUN_CONFIG)
  config = atomic_file.read_json(path, ValueError,
                                 "missing (not a scripts/train.py checkpoint folder)")
  for key, (types, what) in _RUN_CONFIG_TYPES.items():
    value = config.get(key)
    types = types if isinstance(types, tuple) else (types,)
    if key in config and (not isinstance(value, types) or
                          (isinstance(value, bool) and bool not in types) or
                          (what.startswith("a positive") and not value > 0)):
      raise ValueError(f"{path}: {key} must be {what}, got {value!r}")
  for key in path_keys(config):
    config[key] = os.path.normpath(os.path.join(checkpoint_dir, config[key]))
  return config


_RUN_CONFIG_TYPES = {  # key: (accepted types, what the message says); bool is no count
    "face_model": (str, "a model name or a .mat path"), "sampling_dir": (str, "a folder"),
    "model": (str, "a generator name"), "wide": (bool, "true or false"),
    "nz": (int, "a positive integer"), "num_vertices": (int, "a positive integer"),
    "refiner_input": (str, "a refiner input mode"), "ablation": (str, "an ablation name"),
    "start": (str, "a start mode"), "residual_gain": ((int, float), "a number"),
    "exact_sampling": (bool, "true or false"), "identity": (str, "an encoder name"),
    "rnet": (bool, "true or false")}


def restore_generator(generator, checkpoint_dir):
  """Loads the generator's weights from the latest checkpoint of a training run; returns its
  path. ValueError when there is none or it does not fit the generator."""
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  if latest is None:
    raise ValueError(f"{checkpoint_dir}: no checkpoint")
  try:
    status = tf.train.Checkpoint(generator=model_variables(generator)).restore(latest)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise ValueError(f"{latest}: does not match the generator ({str(e).splitlines()[0]})") from None
  return latest


def model_variables(model):
  """A model's variables as the TF variables a tf.train.Checkpoint tracks, in creation order
  (Keras 3 models are not tracked by name, and their names get uniquified per process)."""
  return [v.value for v in model.variables]


class Trainer(tf.Module):
  """Generator and critic updates on a TextureRefinement.

  Args:
    refinement: gcn_face.refinement.TextureRefinement.
    skin_indices: int32 `[S]` skin vertices of the mesh (L_var).
    steps_per_epoch: generator steps per pass over the training set (the schedule epoch
      unless config.schedule_epoch_steps sets one).
    config: Config.
    strategy: a tf.distribute.Strategy under whose scope `refinement` was built (default: the
      current one). Steps then take the per-replica batches of a distributed dataset
      (`strategy.distribute_datasets_from_function` with `shuffled_batches`) and return the
      loss terms averaged over the replicas.
  """

  def __init__(self, refinement, skin_indices, steps_per_epoch, config, strategy=None,
               name="trainer"):
    super().__init__(name=name)
    self.refinement, self.config = refinement, config
    self.strategy = strategy or tf.distribute.get_strategy()
    self.replicas = self.strategy.num_replicas_in_sync
    check_batch_split(config.batch_size, self.replicas)
    self.skin_indices = tf.constant(skin_indices, tf.int32)
    self.generator = refinement.generator
    self.schedule = schedule_lib.Schedule(
        config.schedule_epoch_steps or max(steps_per_epoch, 1), config.schedule_start_epoch,
        config.lr, config.lr_decay)
    with self.strategy.scope():
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
      self.skipped_updates = tf.Variable(0, dtype=tf.int64, trainable=False)
      # Both optimisers read the generator step: the critic's 5 updates per generator
      # update must not decay its learning rate 5x as often.
      schedule = schedule_lib.StepLearningRate(self.schedule, self.step)
      self.g_optimizer = optimizer.FusedAdam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
      self.g_optimizer.build(self.generator.trainable_variables)
      objects = {"generator": model_variables(self.generator), "g_optimizer": self.g_optimizer,
                 "step": self.step}
      self.critic = None
      if config.gan:
        self.critic = critic_lib.ImageCritic(synchronized=self.replicas > 1)
        self.critic(tf.zeros([1, 224, 224, 3]), training=False)
        self.d_optimizer = optimizer.FusedAdam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.d_optimizer.build(self.critic.trainable_variables)
        objects.update(critic=model_variables(self.critic), d_optimizer=self.d_optimizer)
    self.checkpoint = tf.train.Checkpoint(**objects)
    self.generator_step = tf.function(self._generator_step)
    self.critic_step = tf.function(
        lambda batch, seed: self._mean(self.strategy.run(self._critic_replica_step,
                                                         args=(batch, seed))))
    self.evaluate = tf.function(self._evaluate)

  def _global_gradients(self, tape, loss, variables):
    """The gradient of the mean of the replicas' losses, clipped per tensor after the
    all-reduce (as one device clips its batch's gradient), divided by the replica count for
    Keras' optimizer, which sums the replicas' gradients; and whether it is finite."""
    grads = tape.gradient(loss, variables)
    if self.replicas == 1:
      return optimizer.clip_and_check(grads, self.config.clip_norm)
    grads = [g / self.replicas for g in grads]
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grads, finite = optimizer.clip_and_check(grads, self.config.clip_norm)
    return [g / self.replicas for g in grads], finite

  def terms(self, out):
    """Every loss term of a forward pass (SPEC 6.2), as a dict of scalars."""
    render_mask = tf.round(out["render_alpha"]) * out["eroded_mask"]
    features_out = self.refinement.encoder.embed(out["composite_255"], out["landmarks"])
    gcn_loss = losses.masked_l1(out["render_fine"], out["image"], render_mask)
    return {
        "refine": losses.refine_loss(out["fine_albedo"], out["coarse_albedo"]),
        "proj": losses.projection_loss(out["fine_colors"], out["image_colors"],
                                       out["coarse_colors"], out["visibility"]),
        "proj_invisible": losses.invisible_vertex_loss(out["fine_colors"], out["coarse_colors"],
                                                       out["visibility"]),
        "id": losses.identity_loss(out["identity_features"], features_out),
        "sym": losses.symmetry_loss(out["fine_albedo"], self.refinement.symmetric_pairs),
        "var": losses.skin_variance_loss(out["fine_albedo"], self.skin_indices),
        "reg": tf.add_n(self.generator.losses) if self.generator.losses else tf.constant(0.0),
        "pixel": gcn_loss,  # the paper's pixel loss is the release's logged gcn_loss
        "gcn_loss": gcn_loss,
        "pca_loss": losses.masked_l1(out["render_coarse"], out["image"], render_mask),
    }

  def _objective(self, terms, lambda_ren, lambda_ref):
    c = self.config
    return losses.objective(terms, lambda_ren, lambda_ref, terms["reg"], c.objective,
                            c.lambda_sym, c.lambda_id)

  def _fake(self, out):
    return refinement_lib.to_unit(out["composite_255"])

  def _generator_gradients(self, batch, lambda_ren, lambda_ref):
    """One replica's loss terms and the global generator gradient (see _global_gradients)."""
    with tf.GradientTape() as tape:
      out = self.refinement(batch, training=True)
      terms = self.terms(out)
      total = self._objective(terms, lambda_ren, lambda_ref)
      if self.critic is not None:
        terms["adv"] = losses.generator_adversarial_loss(self.critic, self._fake(out),
                                                         self.config.adv_lambda)
        total += terms["adv"]
      terms["total"] = total
    grads, finite = self._global_gradients(tape, total, self.generator.trainable_variables)
    return terms, grads, finite

  def _generator_step(self, batch, lambda_ren, lambda_ref):
    terms, grads, finite = self.strategy.run(self._generator_gradients,
                                             args=(batch, lambda_ren, lambda_ref))
    variables = self.generator.trainable_variables

    def apply():
      # The update is a replica step of its own: Keras' optimizer synchronises the replicas,
      # which tf.distribute does not allow under a condition inside a replica function.
      self.strategy.run(lambda g: self.g_optimizer.apply_gradients(zip(g, variables)),
                        args=(grads,))
      return tf.constant(0, tf.int64)

    # The gradients are all-reduced, so every replica (and worker) takes the same branch.
    finite = self.strategy.experimental_local_results(finite)[0]
    self.skipped_updates.assign_add(tf.cond(finite, apply, lambda: tf.constant(1, tf.int64)))
    self.step.assign_add(1)
    return self._mean(terms)

  def _mean(self, per_replica):
    """A dict of per-replica scalars averaged over the replicas."""
    return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
            for k, v in per_replica.items()}

  def _critic_replica_step(self, batch, seed):
    out = self.refinement(batch, training=False)
    fake = tf.stop_gradient(self._fake(out))
    replica = (tf.distribute.get_replica_context().replica_id_in_sync_group, self.replicas)
    with tf.GradientTape() as tape:
      loss, stats = losses.critic_loss(self.critic, out["image"], fake, seed,
                                       self.config.per_sample_eps, self.config.adv_lambda,
                                       replica)
    variables = self.critic.trainable_variables
    grads, _ = self._global_gradients(tape, loss, variables)
    self.d_optimizer.apply_gradients(zip(grads, variables))
    return {"critic": loss, **stats}

  def _evaluate(self, batch):
    """Loss terms at lambda_ren = lambda_ref = 1 (the release's evaluate), no update."""
    out = self.refinement(batch, training=False)
    terms = self.terms(out)
    terms["total"] = self._objective(terms, 1.0, 1.0)
    return terms, out


def mean_terms(history):
  """Mean of each term over a list of {name: scalar} dicts."""
  return {k: float(np.mean([float(h[k]) for h in history])) for k in history[0]}
