"""Pack binary hash codes into uint32 words and back.

Bit ``i`` of a code goes to word ``i // 32`` at bit position ``i % 32`` (least
significant bit first). When the code length ``K`` is not a multiple of 32, the high
bits of the last word are zero, so they never add to a Hamming distance.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

BITS_PER_WORD = 32


def num_words(num_bits: int) -> int:
    """Return the number of uint32 words that hold a code of ``num_bits`` bits."""
    return -(-num_bits // BITS_PER_WORD)


def _is_jax_array(value: Any) -> bool:
    return isinstance(value, jax.Array)


def check_binary(bits: Any, name: str) -> None:
    """Raise ValueError unless every entry of a concrete array is 0 or 1.

    Integer input is checked through its minimum and maximum, so no temporary array
    of the input's size is created.
    """
    if isinstance(bits, jax.core.Tracer):
        return  # Values inside jit are unknown, so only the dtype can be checked.
    values = np.asarray(bits)
    if values.dtype == np.bool_ or values.size == 0:
        return
    if np.issubdtype(values.dtype, np.integer):
        valid = values.min() >= 0 and values.max() <= 1
    elif np.issubdtype(values.dtype, np.floating):
        valid = bool(((values == 0) | (values == 1)).all())
    else:
        raise ValueError(f"{name} has dtype {values.dtype}; pass bool or {{0, 1}} integers.")
    if not valid:
        example = values[(values != 0) & (values != 1)].flat[0]
        raise ValueError(
            f"{name} must contain only 0 and 1, but it contains {example!r}; "
            "binarise the codes first (for a sigmoid hash layer: activations >= 0.5)."
        )


def pack_codes(bits: Any) -> Any:
    """Pack {0, 1} codes of shape ``[..., K]`` into uint32 words ``[..., ceil(K / 32)]``.

    Returns a jax.Array when ``bits`` is a jax.Array (usable inside jit) and a NumPy
    array otherwise. Raises ValueError for codes with K = 0 or values other than 0 and 1.
    """
    if not _is_jax_array(bits):
        bits = np.asarray(bits)
    if bits.ndim == 0 or bits.shape[-1] == 0:
        raise ValueError(f"codes must have shape [..., K] with K >= 1, got shape {bits.shape}.")
    check_binary(bits, "codes")

    num_bits = bits.shape[-1]
    words = num_words(num_bits)
    if not _is_jax_array(bits):
        return _pack_numpy(bits, words)

    padding = words * BITS_PER_WORD - num_bits
    bits = bits.astype(jnp.uint32)
    if padding:
        bits = jnp.concatenate([bits, jnp.zeros(bits.shape[:-1] + (padding,), jnp.uint32)], axis=-1)
    bits = bits.reshape(bits.shape[:-1] + (words, BITS_PER_WORD))
    shifts = jnp.arange(BITS_PER_WORD, dtype=jnp.uint32)
    # Each bit lands on its own position, so the sum never carries and equals a bitwise OR.
    return (bits << shifts).sum(axis=-1, dtype=jnp.uint32)


def _pack_numpy(bits: np.ndarray, words: int) -> np.ndarray:
    """Pack with np.packbits, which needs memory for the packed result only."""
    if np.issubdtype(bits.dtype, np.floating):
        bits = bits.astype(np.uint8)
    packed_bytes = np.packbits(bits, axis=-1, bitorder="little")
    padded = np.zeros(bits.shape[:-1] + (words * 4,), np.uint8)
    padded[..., : packed_bytes.shape[-1]] = packed_bytes
    # Byte j of a little-endian word contains bits 8j..8j+7, which matches the layout.
    return padded.view("<u4").astype(np.uint32, copy=False)


def unpack_codes(packed: Any, num_bits: int) -> Any:
    """Unpack uint32 words ``[..., W]`` into uint8 codes ``[..., num_bits]``.

    ``num_bits`` must need exactly W words, that is ``32 * (W - 1) < num_bits <= 32 * W``.
    Returns a jax.Array for a jax.Array input and a NumPy array otherwise.
    """
    xp = jnp if _is_jax_array(packed) else np
    packed = packed if _is_jax_array(packed) else np.asarray(packed)
    if packed.ndim == 0 or packed.dtype != xp.uint32:
        raise ValueError(
            f"packed codes must be uint32 with shape [..., W], got dtype {packed.dtype} "
            f"and shape {packed.shape}; create them with pack_codes."
        )
    words = packed.shape[-1]
    valid_type = isinstance(num_bits, (int, np.integer)) and not isinstance(num_bits, (bool, np.bool_))
    if not valid_type or num_bits < 1 or num_words(int(num_bits)) != words:
        raise ValueError(
            f"num_bits={num_bits!r} does not fit {words} packed words; pass the code "
            f"length K with {BITS_PER_WORD * (words - 1)} < K <= {BITS_PER_WORD * words}."
        )

    if xp is np:
        packed_bytes = np.ascontiguousarray(packed, dtype="<u4").view(np.uint8)
        return np.unpackbits(packed_bytes, axis=-1, count=int(num_bits), bitorder="little")

    shifts = jnp.arange(BITS_PER_WORD, dtype=jnp.uint32)
    bits = (packed[..., :, None] >> shifts) & jnp.uint32(1)
    bits = bits.reshape(packed.shape[:-1] + (words * BITS_PER_WORD,))
    return bits[..., : int(num_bits)].astype(jnp.uint8)
