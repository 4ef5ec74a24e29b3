"""Minimum input sizes of backbones with unpadded pools, and the check that names them."""

from typing import Callable, Sequence


def smallest_input_size(pool_input_sizes: Callable[[int], Sequence[int]], window: int,
                        start: int = 1) -> int:
    """Return the smallest square input size from `start` at which every pool's input is at
    least `window` pixels, so each pool gets one full window."""
    size = start
    while min(pool_input_sizes(size)) < window:
        size += 1
    return size


def check_input_size(network: str, height: int, width: int, minimum: int, reason: str,
                     usual_size: str) -> None:
    """Raise ValueError naming `minimum` when a `height` x `width` input is smaller."""
    if min(height, width) < minimum:
        raise ValueError(
            f"{network} needs inputs of at least {minimum}x{minimum} pixels so that {reason}; "
            f"got {height}x{width}. Set model.input_size to {minimum} or more ({usual_size}).")
