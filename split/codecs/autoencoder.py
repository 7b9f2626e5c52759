"""The autoencoder bottleneck as a codec transform: ae_encoder.onnx on the edge, ae_decoder.onnx in the cloud.

Both graphs map the last axis only ((..., C) -> (..., latent) -> (..., C)); tensor names are read from the
graphs, so any exporter's names work. Either side may be absent (the edge needs only the encoder, the
cloud only the decoder); using the missing half is a clear error.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.card import card_path_for, read_card

from split.codecs.base import CodecError
from split.session import load_session

ENCODER_FILE = "ae_encoder.onnx"
DECODER_FILE = "ae_decoder.onnx"


def _last_dim(session: ort.InferenceSession, which: str) -> int | None:
    shape = (session.get_inputs()[0].shape if which == "input" else session.get_outputs()[0].shape)
    dim = shape[-1] if shape else None
    return dim if isinstance(dim, int) else None


def source_fingerprint(onnx_path: Path) -> int | None:
    """CRC-32 of the autoencoder.pth digest the half's card records (both halves' cards name the same one),
    or None without a card that does (a malformed card is refused, as everywhere)."""
    path = card_path_for(onnx_path)
    if not path.is_file():
        return None
    digest = getattr(read_card(path).source, "sha256", None)
    return zlib.crc32(digest.encode()) if digest else None


class Autoencoder:
    """The Transform protocol (split/codecs/base.py) over the ONNX pair."""

    # A bare ONNX pair has no card to derive a fingerprint from; such a side neither sends nor demands one.
    requires_fingerprint = False
    what = "autoencoders (ae_*.onnx exported from different autoencoder.pth)"

    def __init__(self, encoder: Path | None, decoder: Path | None, threads: int = 1) -> None:
        if encoder is None and decoder is None:
            raise FileNotFoundError("autoencoder codec needs ae_encoder.onnx and/or ae_decoder.onnx")
        self._enc = load_session(encoder, threads) if encoder is not None else None
        self._dec = load_session(decoder, threads) if decoder is not None else None
        latent = None
        if self._enc is not None:
            latent = _last_dim(self._enc, "output")
        if self._dec is not None:
            dec_latent = _last_dim(self._dec, "input")
            if latent is not None and dec_latent is not None and latent != dec_latent:
                raise ValueError(f"autoencoder halves disagree: encoder gives {latent} latent channels, "
                                 f"decoder takes {dec_latent}")
            latent = latent or dec_latent
        if latent is None:
            raise ValueError("autoencoder graphs do not declare a static latent size on their last axis")
        self.latent_dim = int(latent)
        prints = {source_fingerprint(Path(p)) for p in (encoder, decoder) if p is not None} - {None}
        if len(prints) > 1:
            raise ValueError(f"autoencoder halves come from different autoencoder.pth files (their cards: "
                             f"{encoder}, {decoder})")
        self.fingerprint = prints.pop() if prints else None

    @classmethod
    def from_dir(cls, directory: Path, threads: int = 1) -> "Autoencoder":
        enc, dec = Path(directory) / ENCODER_FILE, Path(directory) / DECODER_FILE
        return cls(enc if enc.is_file() else None, dec if dec.is_file() else None, threads=threads)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self._enc is None:
            raise CodecError("this side has no ae_encoder.onnx: cannot encode with the autoencoder")
        return self._enc.run(None, {self._enc.get_inputs()[0].name: x.astype(np.float32)})[0]

    def inverse(self, z: np.ndarray, channels: int) -> np.ndarray:
        if self._dec is None:
            raise CodecError("this side has no ae_decoder.onnx: cannot decode the autoencoder's latent")
        out = self._dec.run(None, {self._dec.get_inputs()[0].name: z.astype(np.float32)})[0]
        if out.shape[-1] != channels:
            raise CodecError(f"autoencoder decoder gives {out.shape[-1]} channels, the request's shape says {channels}")
        return out
