"""Data-parallel training on several workers or GPUs through TensorFlow's own strategies.

``train-model --distribute multi-worker`` (or ``auto`` with ``TF_CONFIG`` naming more than one worker)
trains with ``tf.distribute.MultiWorkerMirroredStrategy``: every worker runs the same command with its
own ``TF_CONFIG`` (the cluster's ``host:port`` list and its own index), gradients are all-reduced over
gRPC every step, and worker 0 (the chief) writes the artefacts. ``mirrored`` uses every local GPU of
one machine. Keras 3 runs these strategies on the TensorFlow backend only.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from converter.errors import DataError

log = logging.getLogger(__name__)

DISTRIBUTE = ("auto", "none", "multi-worker", "mirrored")


def cluster_workers() -> int:
    """How many workers ``TF_CONFIG`` names (0 when it is unset); a malformed one is a clear error."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        conf = json.loads(raw)
        workers = conf["cluster"]["worker"]
        index = int(conf["task"]["index"])
        kind = conf["task"]["type"]
    except (ValueError, KeyError, TypeError):
        raise DataError('TF_CONFIG is not valid: expected {"cluster": {"worker": ["host:port", ...]}, '
                        '"task": {"type": "worker", "index": N}}') from None
    if kind not in ("worker", "chief") or not isinstance(workers, list) or not 0 <= index < len(workers):
        raise DataError(f"TF_CONFIG: task {kind!r} index {index} is not one of its {len(workers)} workers")
    return len(workers)


def make_strategy(kind: str) -> Any:
    """The ``tf.distribute`` strategy for ``--distribute KIND``, or None for one device.

    Must run before TensorFlow does anything else in the process (MultiWorkerMirroredStrategy's rule).
    """
    if kind not in DISTRIBUTE:
        raise DataError(f"--distribute {kind!r}: choose from {', '.join(DISTRIBUTE)}")
    workers = cluster_workers()
    if kind == "none" or (kind == "auto" and workers <= 1):
        return None
    import keras  # noqa: PLC0415

    if keras.backend.backend() != "tensorflow":
        raise DataError(f"--distribute {kind} uses TensorFlow's strategies; run with KERAS_BACKEND=tensorflow "
                        "(on JAX, Keras's own keras.distribution API applies instead)")
    import tensorflow as tf  # noqa: PLC0415

    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        if workers == 0:
            raise DataError("--distribute multi-worker needs TF_CONFIG: set it on every worker (see docs/training.md, "
                            "'Training on several machines')")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    log.info("%s: %d replicas in sync over %d worker(s)", type(strategy).__name__, strategy.num_replicas_in_sync, max(1, workers))
    return strategy


def worker_index(strategy: Any) -> int:
    """This process's worker number (0: the chief, which writes the artefacts)."""
    if strategy is None:
        return 0
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None and resolver.task_type is not None else 0


def worker_count(strategy: Any) -> int:
    """How many workers train together (1 without a strategy or on one machine's GPUs)."""
    multi = strategy is not None and getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()
    return max(1, cluster_workers()) if multi else 1


def same_on_every_worker(strategy: Any, value: int) -> bool:
    """Whether every replica passed the same ``value``: one all-reduce of (value, value squared), equal only if they all agree."""
    import tensorflow as tf  # noqa: PLC0415

    per_replica = strategy.run(lambda: tf.constant([float(value), float(value) ** 2], tf.float64))
    total, squares = (float(v) for v in strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy())
    n = strategy.num_replicas_in_sync
    return abs(n * squares - total * total) < 0.5
