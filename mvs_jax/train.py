"""`train_and_evaluate(config, workdir)`: train a hashing network, checkpoint it, evaluate it."""

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec

from mvs_jax import evaluation, losses, methods, metric_writers, training
from mvs_jax.data import loading
from mvs_jax.input_pipeline import TrainBatches
from mvs_jax.models import build_model
from mvs_jax.pretrained import load_backbone


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Reject values that would fail late or silently, with the field name and a fix."""
    if config.model.num_bits <= 0:
        raise ValueError(
            f"model.num_bits must be a positive number of hash bits, got {config.model.num_bits}.")
    if config.eval.k is not None and config.eval.k <= 0:
        raise ValueError(
            f"eval.k must be a positive number of retrieved items (or None for the whole "
            f"database), got {config.eval.k}.")
    for field in ("batch_size", "num_steps"):
        if config[field] <= 0:
            raise ValueError(f"{field} must be positive, got {config[field]}.")
    if config.model.input_size <= 0:
        raise ValueError(f"model.input_size must be positive, got {config.model.input_size}.")
    losses.get_loss(config.loss.name)
    classifier_input = config.model.get("classifier_input", "hash")
    if config.loss.name == "greedyhash" and classifier_input != "sign":
        raise ValueError(
            f"loss.name='greedyhash' trains the classifier on sign codes and needs "
            f"model.classifier_input='sign', got {classifier_input!r}. Use "
            "--config.method=greedyhash, which sets both, or add "
            "--config.model.classifier_input=sign with --config.method=custom.")
    devices = jax.device_count()
    for field, value in (("batch_size", config.batch_size),
                         ("eval.batch_size", config.eval.batch_size)):
        if value % devices:
            raise ValueError(
                f"{field}={value} is not divisible by the {devices} devices; choose a multiple.")


def _maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    if config.distributed:
        # Reads the coordinator address and process ids from the cluster environment
        # (SLURM, Cloud TPU, or JAX_COORDINATOR_ADDRESS and friends).
        jax.distributed.initialize()


def _load_data(config: ml_collections.ConfigDict) -> dict[str, loading.Split]:
    builder = loading.get_builder(config)
    size = config.data.image_size
    names = {"train": config.data.train_split, "query": config.data.query_split,
             "database": config.data.database_split}
    splits = {}
    for role, split in names.items():
        if split not in splits:
            splits[split] = loading.load_split(builder, split, size)
    data = {role: splits[split] for role, split in names.items()}
    for role, split in data.items():
        logging.info("%s split %r: %d images of %dx%d, %d classes.", role, names[role],
                     len(split), size, size, len(split.class_names))
    return data


def _checkpoint_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints, create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                 options=options)


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Train on `config.data.train_split`, then rank the database split for every query.

    `config.method` sets the backbone, the loss and the method's config changes
    (`methods.apply_method`); `workdir/config.json` records the config after those changes.

    Resumes from the latest checkpoint in `workdir`. Returns the final retrieval metrics, which
    are also written to `workdir/results.json`.
    """
    _maybe_initialize_distributed(config)
    config = methods.apply_method(config)
    logging.info("Config, with the changes of method %r:\n%s", config.method, config)
    validate_config(config)
    os.makedirs(workdir, exist_ok=True)
    _write_config(config, workdir)
    writer = metric_writers.create_writer(workdir, write_files=jax.process_index() == 0)

    data = _load_data(config)
    num_classes = len(data["train"].class_names)
    model = build_model(config, num_classes)
    optimizer = training.make_optimizer(config)
    mesh = training.make_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())

    state = jax.jit(lambda: training.create_train_state(model, optimizer, config),
                    out_shardings=replicated)()
    if config.init_from.path:
        # Loaded before the checkpoint restore below, so a checkpoint in workdir wins.
        params, batch_stats = load_backbone(
            config.init_from.path, config.init_from.format, state.params, state.batch_stats,
            activation=config.model.activation)
        state = state.replace(params=params, batch_stats=batch_stats)
        logging.info("Initialised the backbone from %s; the hash and classifier layers keep "
                     "their random initialisation.", config.init_from.path)
    state, state_sharding = training.replicate_state(state, mesh)
    manager = _checkpoint_manager(workdir, config)
    latest = manager.latest_step()
    if latest is not None:
        state = manager.restore(latest, args=ocp.args.StandardRestore(state))
        logging.info("Resumed from the checkpoint of step %d in %s.", latest, workdir)
    start_step = int(state.step)

    train_step = training.make_train_step(model, optimizer, config, mesh, state_sharding)
    batches = TrainBatches(len(data["train"]), config.batch_size, config.seed,
                           jax.process_index(), jax.process_count())
    data_sharding = NamedSharding(mesh, PartitionSpec(training.DATA_AXIS))
    rng = jax.device_put(jax.random.key_data(jax.random.key(config.seed + 1)), replicated)
    rng = jax.random.wrap_key_data(rng)

    def global_batch(step: int) -> tuple[jax.Array, jax.Array]:
        indices = batches.indices(step)
        images = jax.make_array_from_process_local_data(
            data_sharding, data["train"].images[indices])
        labels = jax.make_array_from_process_local_data(
            data_sharding, data["train"].labels[indices])
        return images, labels

    if start_step < config.num_steps:
        logging.info("Compiling the train step.")
        compile_start = time.perf_counter()
        images, labels = global_batch(start_step)
        compiled = train_step.lower(state, images, labels, rng).compile()
        logging.info("Compiled the train step in %.1f s.", time.perf_counter() - compile_start)
        state = _train_loop(compiled, state, global_batch, rng, start_step, config, writer,
                            manager)

    logging.info("Evaluating: %d queries against a database of %d.", len(data["query"]),
                 len(data["database"]))
    encode_fn = training.make_encode_step(model, config, mesh, state_sharding)
    eval_start = time.perf_counter()
    results = evaluation.evaluate_retrieval(encode_fn, state, data["query"], data["database"],
                                            config, mesh)
    results["eval_seconds"] = time.perf_counter() - eval_start
    writer.write_scalars(config.num_steps, {f"eval/{name}": value
                                            for name, value in results.items()})
    writer.close()
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
            json.dump({"step": int(state.step), **results}, f, indent=2, sort_keys=True)
    manager.close()
    return results


def _train_loop(train_step, state, global_batch, rng, start_step: int,
                config: ml_collections.ConfigDict, writer, manager: ocp.CheckpointManager):
    """Run steps `start_step .. num_steps - 1`, logging, checkpointing and stopping on NaN."""
    log_every = config.log_every
    pending = []
    window_start = time.perf_counter()
    window_steps = 0
    train_start = None
    train_start_step = start_step

    for step in range(start_step, config.num_steps):
        images, labels = global_batch(step)
        state, metrics = train_step(state, images, labels, rng)
        pending.append(metrics)
        window_steps += 1
        is_last = step + 1 == config.num_steps

        if (step + 1) % log_every == 0 or is_last:
            # Reading metrics waits for the device, once per `log_every` steps.
            stacked = jax.device_get(pending)
            pending = []
            summary = {f"train/{name}": float(np.mean([m[name] for m in stacked]))
                       for name in stacked[0]}
            if not np.isfinite(summary["train/loss"]):
                raise FloatingPointError(
                    f"Non-finite training loss {summary['train/loss']} within steps "
                    f"{step + 2 - len(stacked)}..{step + 1}; lower optimizer.learning_rate or "
                    "check the input data.")
            now = time.perf_counter()
            steps_per_second = window_steps / (now - window_start)
            if train_start is None:
                # The first window includes warm-up; the ETA uses the steps after it.
                train_start, train_start_step = now, step + 1
            else:
                summary["train/steps_per_second"] = steps_per_second
                summary["train/images_per_second"] = steps_per_second * config.batch_size
            done = step + 1 - train_start_step
            if done > 0:
                rate = done / (now - train_start)
                summary["train/eta_minutes"] = (config.num_steps - step - 1) / rate / 60
            writer.write_scalars(step + 1, summary)
            window_start, window_steps = now, 0

        if (step + 1) % config.checkpoint_every == 0 or is_last:
            # Orbax copies the arrays to host memory before `save` returns, so donating the
            # state to the next step is safe while the files are written in the background.
            manager.save(step + 1, args=ocp.args.StandardSave(state), force=True)

    writer.flush()
    manager.wait_until_finished()
    return state
