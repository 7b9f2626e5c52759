"""A learned post-filter for the KLT codec, run by the decoder only (`klt-ans-4x-pf`).

Why: at a coarse step most components round to zero frame by frame, but the boundary moves slowly over
time, so the frames around a decoded frame still say much about what its rounding lost. A small residual
convolution over time (trained by `python -m split fit-postfilter` on training utterances coded at that
step, against the Fisher-weighted error the KLT fit already measures) estimates the lost part. The edge and
the wire are those of the plain codec: only the cloud holds and runs the filter.

The filter is an ONNX graph `klt_postfilter_<N>x.onnx` beside klt.json, (batch, frames, C) -> the same,
whose metadata names the klt.json it was trained with (`klt_crc`) and the coarseness; a filter trained with
another fit or step is refused when loaded.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from split.codecs.base import CodecError
from split.codecs.klt import coarseness_tag
from split.session import load_session

PREFIX = "klt_postfilter_"
META_KLT_CRC = "klt_crc"
META_COARSENESS = "coarseness"


def postfilter_file(coarseness: float) -> str:
    return f"{PREFIX}{coarseness_tag(coarseness)}.onnx"


class PostFilter:
    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.session = load_session(self.path, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.klt_crc = int(meta[META_KLT_CRC])
            self.coarseness = float(meta[META_COARSENESS])
        except (KeyError, ValueError):
            raise ValueError(f"{self.path}: not a KLT post-filter (metadata {META_KLT_CRC!r} and "
                             f"{META_COARSENESS!r} missing; make one with python -m split fit-postfilter)") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = x.ndim == 2
        y = self.session.run(None, {self.input: np.ascontiguousarray((x[None] if flat else x), dtype=np.float32)})[0]
        return y[0] if flat else y


def load_postfilters(directory: Path, klt_crc: int | None) -> dict[str, PostFilter]:
    """The folder's post-filters by coarseness tag, each checked against the folder's klt.json."""
    found: dict[str, PostFilter] = {}
    for path in sorted(Path(directory).glob(f"{PREFIX}*.onnx")):
        if not re.fullmatch(rf"{PREFIX}[0-9.]+x\.onnx", path.name):
            continue
        pf = PostFilter(path)
        if klt_crc is None:
            raise ValueError(f"{path}: a KLT post-filter without klt.json beside it")
        if pf.klt_crc != klt_crc:
            raise ValueError(f"{path} was trained with another klt.json (CRC {pf.klt_crc:#010x}, the folder's is "
                             f"{klt_crc:#010x}): refit it with python -m split fit-postfilter")
        if postfilter_file(pf.coarseness) != path.name:
            raise ValueError(f"{path}: trained at {coarseness_tag(pf.coarseness)}, not what its name says")
        found[coarseness_tag(pf.coarseness)] = pf
    return found


def missing(coarseness: float) -> CodecError:
    return CodecError(f"this side has no {postfilter_file(coarseness)} (python -m split fit-postfilter): cannot "
                      "decode with the post-filter")
