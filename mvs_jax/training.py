"""Train state, optimiser and the jitted, data-parallel train step."""

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mvs_jax import input_pipeline, losses
from mvs_jax.models import INPUT_NORMALIZATION

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint stores: the step, parameters, BatchNorm statistics, optimiser."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """Build a one-axis mesh for data parallelism, by default over every device of every process."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicate_state(state: TrainState, mesh: Mesh) -> tuple[TrainState, Any]:
    """Place `state` on every device of `mesh`; return it with its sharding tree for `jax.jit`."""
    replicated = NamedSharding(mesh, PartitionSpec())
    state_sharding = jax.tree_util.tree_map(lambda _: replicated, state)
    return jax.device_put(state, state_sharding), state_sharding


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Step schedule: the base rate divided by `1 / decay_factor` every `decay_steps` steps."""
    opt = config.optimizer
    if opt.decay_steps <= 0:
        return optax.constant_schedule(opt.learning_rate)
    boundaries = range(opt.decay_steps, config.num_steps, opt.decay_steps)
    return optax.piecewise_constant_schedule(
        opt.learning_rate, {int(b): opt.decay_factor for b in boundaries})


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD with momentum and the step schedule, with optional L2 weight decay on kernels.

    For a pretrained backbone, `optimizer.new_layer_lr_multiplier` (default 1) scales the
    learning rate of every top-level module other than `backbone` (the hash layer and the
    classifier), and `optimizer.freeze_backbone` (default False) stops the backbone's updates.
    """
    opt = config.optimizer
    if opt.name != "sgd":
        raise ValueError(f"Unknown optimizer.name {opt.name!r}; valid: ['sgd'].")
    multiplier = opt.get("new_layer_lr_multiplier", 1.0)
    freeze_backbone = opt.get("freeze_backbone", False)
    if multiplier <= 0:
        raise ValueError(
            f"optimizer.new_layer_lr_multiplier must be positive, got {multiplier}.")
    if multiplier == 1.0 and not freeze_backbone:
        return _sgd(config, 1.0)

    # The model from `build_model` already stops gradients at a frozen backbone. These zero
    # updates also freeze the backbone of a model built another way.
    backbone = optax.set_to_zero() if freeze_backbone else _sgd(config, 1.0)
    return optax.multi_transform(
        {"backbone": backbone, "new_layers": _sgd(config, multiplier)},
        lambda params: {name: "backbone" if name == "backbone" else "new_layers"
                        for name in params})


def _sgd(config: ml_collections.ConfigDict,
         learning_rate_multiplier: float) -> optax.GradientTransformation:
    """Build weight decay and SGD with the schedule scaled by `learning_rate_multiplier`."""
    opt = config.optimizer
    base_schedule = learning_rate_schedule(config)

    def schedule(step):
        return base_schedule(step) * learning_rate_multiplier

    parts = []
    if opt.weight_decay > 0:
        # Decay only convolution and dense kernels, not BatchNorm scales or biases.
        parts.append(optax.add_decayed_weights(
            opt.weight_decay,
            mask=lambda params: jax.tree_util.tree_map_with_path(
                lambda path, _: path[-1].key == "kernel", params)))
    parts.append(optax.sgd(base_schedule if learning_rate_multiplier == 1.0 else schedule,
                           momentum=opt.momentum, nesterov=opt.nesterov))
    return optax.chain(*parts)


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       config: ml_collections.ConfigDict) -> TrainState:
    """Initialise parameters and BatchNorm statistics from `config.seed`."""
    size = config.model.input_size
    variables = model.init(jax.random.key(config.seed), jnp.zeros((1, size, size, 3)), train=False)
    params = variables["params"]
    # Backbones without BatchNorm (AlexNet) have no batch_stats collection.
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=optimizer.init(params))


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation,
                    config: ml_collections.ConfigDict, mesh: Mesh,
                    state_sharding: Any) -> Callable[..., tuple[TrainState, dict]]:
    """Build the jitted train step `(state, images, labels, rng) -> (state, metrics)`.

    `images` (uint8) and `labels` are sharded over the mesh's data axis. The state is replicated
    and donated. The step's random key is `fold_in(rng, state.step)`, so the host passes the same
    base key every step and no host work is needed between steps.
    """
    loss_fn = losses.get_loss(config.loss.name)
    normalization = INPUT_NORMALIZATION[config.model.backbone]
    schedule = learning_rate_schedule(config)

    def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
                   rng: jax.Array) -> tuple[TrainState, dict]:
        step_rng = jax.random.fold_in(rng, state.step)
        augment_rng, dropout_rng = jax.random.split(step_rng)
        inputs = input_pipeline.preprocess(
            images, config.model.input_size, normalization, augment_rng,
            config.augment.crop_padding, config.augment.flip)

        def compute_loss(params):
            # BatchNorm reduces over the batch axis, which is sharded over devices: XLA reduces
            # across devices, so the statistics are those of the global batch.
            outputs, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, inputs, train=True,
                mutable=["batch_stats"], rngs={"dropout": dropout_rng})
            loss, metrics = loss_fn(dict(outputs, step=state.step), labels, config.loss)
            return loss, (metrics, outputs, updates.get("batch_stats", {}))

        grad_fn = jax.value_and_grad(compute_loss, has_aux=True)
        (loss, (metrics, outputs, batch_stats)), grads = grad_fn(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        accuracy = jnp.mean(jnp.argmax(outputs["logits"], -1) == labels)
        metrics = dict(metrics, loss=loss, accuracy=accuracy,
                       learning_rate=schedule(state.step),
                       grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params),
                       bits_on=jnp.mean(outputs["hash"] >= 0.5))
        new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                               opt_state=opt_state)
        return new_state, metrics

    data_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        train_step,
        in_shardings=(state_sharding, data_sharding, data_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0)


def make_encode_step(model: nn.Module, config: ml_collections.ConfigDict, mesh: Mesh,
                     state_sharding: Any) -> Callable[..., jax.Array]:
    """Build the jitted `(state, images) -> hash activations` in inference mode."""
    normalization = INPUT_NORMALIZATION[config.model.backbone]

    def encode(state: TrainState, images: jax.Array) -> jax.Array:
        inputs = input_pipeline.preprocess(images, config.model.input_size, normalization)
        outputs = model.apply({"params": state.params, "batch_stats": state.batch_stats}, inputs,
                              train=False)
        return outputs["hash"]

    data_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.jit(encode, in_shardings=(state_sharding, data_sharding),
                   out_shardings=data_sharding)
