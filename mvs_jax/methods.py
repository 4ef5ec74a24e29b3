"""Hashing methods, registered by name: a backbone, a loss and a few config changes.

Every method trains the same head (`HashingNetwork`): a hash layer of K sigmoid units and a
softmax classifier on the hash activations. Binary codes are the activations thresholded at 0.5.
`config.method` names the method, and `apply_method` sets `model.backbone`, `loss.name` and the
method's config changes when training starts. The method `custom` takes `model.backbone` and
`loss.name` from the config as they are, for combinations that are not registered here.
"""

import dataclasses
import logging
import types
from typing import Any, Mapping

import ml_collections

CUSTOM = "custom"


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: backbone and loss names and the config fields it changes."""

    backbone: str | None
    loss: str | None
    description: str
    config_changes: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}))


METHODS: dict[str, Method] = {
    "paper": Method("mobilenet_v1", "cross_entropy",
                    "MobileNet v1 + sigmoid hash layer + softmax, cross-entropy only"),
    # Trained from scratch without BatchNorm, this AlexNet stayed at chance loss with SGD at the
    # default rate 0.1 and learned at 0.01 (40 steps on a 3-class CIFAR-10 subset).
    "dlbh": Method("alexnet", "cross_entropy",
                   "DLBH (Lin et al., CVPRW 2015): CaffeNet + sigmoid latent layer, cross-entropy",
                   types.MappingProxyType({"optimizer.learning_rate": 0.01})),
    "ssdh": Method("mobilenet_v1", "ssdh",
                   "SSDH (Yang et al., TPAMI 2017): cross-entropy + forcing-binary + 50%-fire"),
    "hashnet": Method("mobilenet_v1", "hashnet",
                      "HashNet (Cao et al., ICCV 2017): weighted pairwise, continuation"),
    "dpsh": Method("mobilenet_v1", "dpsh",
                   "DPSH (Li et al., IJCAI 2016): pairwise likelihood + quantization"),
    # DSH's loss is about 30 times the cross-entropy at 64 bits (margin 2K). With SGD at 0.1 it
    # reached NaN within 20 steps, and it trained at 0.01 (MobileNet 0.25, 3-class CIFAR subset).
    "dsh": Method("mobilenet_v1", "dsh",
                  "DSH (Liu et al., CVPR 2016): contrastive on relaxed codes + regularizer",
                  types.MappingProxyType({"optimizer.learning_rate": 0.01})),
    "csq": Method("mobilenet_v1", "csq",
                  "CSQ (Yuan et al., CVPR 2020): Hadamard hash centers with BCE"),
    "dpn": Method("mobilenet_v1", "dpn",
                  "DPN (Fan et al., IJCAI 2020): polarization hinge to class target codes"),
    "orthohash": Method("mobilenet_v1", "orthohash",
                        "OrthoHash (Hoe et al., NeurIPS 2021): cosine to class codes with margin"),
    "greedyhash": Method("mobilenet_v1", "greedyhash",
                         "GreedyHash (Su et al., NeurIPS 2018): classifier on straight-through "
                         "sign codes + cubic penalty",
                         types.MappingProxyType({"model.classifier_input": "sign"})),
    CUSTOM: Method(None, None, "model.backbone and loss.name as given in the config"),
}

# The method of the default config; its backbone and loss are the defaults that another method
# may replace without a conflict.
DEFAULT_METHOD = "paper"


def get_method(name: str) -> Method:
    """Look up a registered method by name; raise with the list of valid names if unknown."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid methods: {sorted(METHODS)}.")
    return METHODS[name]


def _get_field(config: ml_collections.ConfigDict, field: str) -> Any:
    section = config
    for part in field.split("."):
        section = section[part]
    return section


def _set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    *parents, name = field.split(".")
    section = config
    for part in parents:
        section = section[part]
    section[name] = value


def method_fields(name: str) -> dict[str, Any]:
    """Return the config fields that method `name` sets, as {dotted field: value}."""
    method = get_method(name)
    fields = {}
    if method.backbone is not None:
        fields["model.backbone"] = method.backbone
    if method.loss is not None:
        fields["loss.name"] = method.loss
    fields.update(method.config_changes)
    return fields


def apply_method(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Return a copy of `config` with the fields of `config.method` set.

    The method's values replace the config's, and each replaced value is logged. So a
    command-line value for a field that the method sets has no effect, and the method `custom`
    is the way to choose every field. A `model.backbone` or `loss.name` that is neither the method's nor
    the default method's is rejected, because it was set on purpose and would be replaced.
    """
    fields = method_fields(config.method)
    default_fields = method_fields(DEFAULT_METHOD)
    for field in ("model.backbone", "loss.name"):
        current = _get_field(config, field)
        if field in fields and current not in (fields[field], default_fields[field]):
            raise ValueError(
                f"{field}={current!r} conflicts with method {config.method!r}, which uses "
                f"{fields[field]!r}. Select a registered combination with --config.method "
                f"(valid: {sorted(METHODS)}), or set --config.method={CUSTOM} to use "
                "model.backbone and loss.name as given.")

    resolved = config.copy_and_resolve_references()
    for field, value in fields.items():
        current = _get_field(resolved, field)
        if current != value:
            logging.info("Method %r sets %s=%r (the config had %r).", config.method, field,
                         value, current)
            _set_field(resolved, field, value)
    return resolved
