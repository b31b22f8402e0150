"""PDQ perceptual hashes (256 bits) for images and frames, and their hex/byte forms.

Hex strings are written in PDQ's canonical order (16-bit words, most significant word first, as
ThreatExchange and HMA print them), assuming bit k of pdqhash's vector is bit k of PDQ's words; not
yet checked against a reference hash from those tools (none installs offline here).
"""

from __future__ import annotations

import numpy as np
import pdqhash
from PIL import Image

BITS = 256
NBYTES = BITS // 8
MAX_SIDE = 512  # PDQ downsamples to 64x64 internally; hashing a <=512 px copy is as good and much cheaper


def bits_to_hex(bits: np.ndarray) -> str:
    # pdqhash gives bit k at index k; the canonical string prints bit 255 first
    return np.packbits(np.asarray(bits, dtype=np.uint8)[::-1]).tobytes().hex()


def hex_to_bytes(h: str) -> bytes:
    b = bytes.fromhex(h)
    if len(b) != NBYTES:
        raise ValueError(f"a PDQ hash is {NBYTES * 2} hex digits, got {len(h)}")
    return b


def codes(hashes: list[str]) -> np.ndarray:
    """Hex hashes -> uint8 [n, 32] codes for the Hamming index."""
    if not hashes:
        return np.zeros((0, NBYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(hex_to_bytes(h) for h in hashes), dtype=np.uint8).reshape(-1, NBYTES)


def hamming(a: str, b: str) -> int:
    return int.bit_count(int(a, 16) ^ int(b, 16))


def to_rgb_array(img: Image.Image, max_side: int = MAX_SIDE) -> np.ndarray:
    """An RGB uint8 array no larger than ``max_side`` (aspect kept), the input PDQ is computed on."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def hash_array(rgb: np.ndarray) -> tuple[str, int]:
    """(hex hash, quality 0..100). Quality is PDQ's gradient measure: uniform/black frames score ~0."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return bits_to_hex(bits), int(quality)


def hash_image(img: Image.Image) -> tuple[str, int]:
    return hash_array(to_rgb_array(img))


def dihedral_hashes(rgb: np.ndarray) -> list[str]:
    """The 8 hashes of the image's rotations by 90 degrees and mirrors (query time only: a mirrored or
    rotated copy matches the original's stored hash through one of them). The first is the original."""
    vectors, _quality = pdqhash.compute_dihedral(np.ascontiguousarray(rgb, dtype=np.uint8))
    return [bits_to_hex(v) for v in vectors]
