"""The wire format: building and validating the protobuf messages of split/proto/split.proto.

Both sides go through here: the edge builds an `InferRequest` from an encoded tensor, the server parses
and checks every field (`parse_request`) before any of them is used, and raises `RequestError` naming
the field and what was expected; the server turns that into INVALID_ARGUMENT.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from google.protobuf.message import DecodeError

from split.codecs import Encoded
from split.proto import split_pb2 as pb

PROTOCOL_VERSION = 1
SERVICE = "split.v1.SplitInference"
INFER_METHOD = f"/{SERVICE}/Infer"
HEALTH_METHOD = f"/{SERVICE}/Health"
DECODED_DTYPES = ("float32",)
MAX_RANK = 4
# An encoded payload larger than this multiple of the raw fp32 size (+ slack for tiny tensors) is not
# a compressed tensor: refuse it before any decoder spends time on it.
MAX_EXPANSION = 2.0
PAYLOAD_SLACK = 4096


class RequestError(ValueError):
    """A request field that is missing or wrong (the message names the field)."""


@dataclass(frozen=True)
class Limits:
    max_elements: int = 64 * 1024 * 1024
    max_dim: int = 1 << 24


@dataclass
class ParsedRequest:
    request_id: str
    codec: str
    shape: tuple[int, ...]
    lengths: list[int] | None
    input_lengths: list[int] | None
    payload: bytes
    params: dict[str, Any]
    return_output: bool


def params_to_proto(params: dict[str, Any]) -> pb.CodecParams:
    msg = pb.CodecParams()
    for key, value in params.items():
        if key not in pb.CodecParams.DESCRIPTOR.fields_by_name:
            raise ValueError(f"codec parameter {key!r} has no field in CodecParams (extend split.proto)")
        if isinstance(value, (list, tuple)):
            getattr(msg, key).extend(value)
        else:
            setattr(msg, key, value)
    return msg


def params_from_proto(msg: pb.CodecParams) -> dict[str, Any]:
    """The fields the sender set (optional scalars by presence, repeated ones when non-empty)."""
    return {field.name: (list(value) if field.is_repeated else value)
            for field, value in msg.ListFields()}


def build_request(encoded: Encoded, *, codec: str, shape: Iterable[int], lengths: Iterable[int] | None = None,
                  input_lengths: Iterable[int] | None = None, request_id: str = "", return_output: bool = False,
                  send_time: float = 0.0) -> pb.InferRequest:
    return pb.InferRequest(
        version=PROTOCOL_VERSION, request_id=request_id, codec=codec, dtype="float32",
        shape=[int(d) for d in shape], lengths=[int(n) for n in (lengths or [])],
        input_lengths=[int(n) for n in (input_lengths or [])], payload=encoded.payload,
        params=params_to_proto(encoded.params), return_output=return_output, client_send_unix=send_time)


def parse_request(raw: bytes, known_codecs: Iterable[str], limits: Limits = Limits(),
                  channels: int | None = None) -> ParsedRequest:
    """Parse and check one serialised InferRequest; `channels` is the Tail's static last axis, if any."""
    try:
        req = pb.InferRequest.FromString(raw)
    except DecodeError as exc:
        raise RequestError(f"request is not a valid split.v1.InferRequest message ({exc})") from None
    if req.version != PROTOCOL_VERSION:
        raise RequestError(f"version: {req.version} is not supported (this server speaks {PROTOCOL_VERSION})")
    known = list(known_codecs)
    if req.codec not in known:
        raise RequestError(f"codec: {req.codec!r} is unknown to this server (known: {', '.join(known)})")
    if req.dtype not in DECODED_DTYPES:
        raise RequestError(f"dtype: {req.dtype!r} is not supported (expected one of {list(DECODED_DTYPES)})")
    shape = tuple(int(d) for d in req.shape)
    if not 1 <= len(shape) <= MAX_RANK:
        raise RequestError(f"shape: rank {len(shape)} is not in 1..{MAX_RANK}")
    if any(not 1 <= d <= limits.max_dim for d in shape):
        raise RequestError(f"shape: {list(shape)} has a dimension outside 1..{limits.max_dim}")
    elements = int(np.prod(shape, dtype=np.int64))
    if elements > limits.max_elements:
        raise RequestError(f"shape: {list(shape)} holds {elements} elements, over this server's limit "
                           f"of {limits.max_elements}")
    if channels is not None and shape[-1] != channels:
        raise RequestError(f"shape: last axis is {shape[-1]}, the Tail takes {channels} channels")
    lengths = [int(n) for n in req.lengths] or None
    if lengths is not None:
        if len(shape) < 2:
            raise RequestError("lengths: given for a tensor without a (batch, frames) layout")
        if len(lengths) != shape[0]:
            raise RequestError(f"lengths: {len(lengths)} values for a batch of {shape[0]}")
        if any(not 0 <= n <= shape[1] for n in lengths):
            raise RequestError(f"lengths: {lengths} must lie in 0..{shape[1]} (the frames axis)")
    input_lengths = [int(n) for n in req.input_lengths] or None
    if input_lengths is not None:
        if len(input_lengths) != shape[0]:
            raise RequestError(f"input_lengths: {len(input_lengths)} values for a batch of {shape[0]}")
        if any(not 1 <= n <= limits.max_dim for n in input_lengths):
            raise RequestError(f"input_lengths: {input_lengths} must lie in 1..{limits.max_dim}")
    if len(req.payload) > MAX_EXPANSION * 4 * elements + PAYLOAD_SLACK:
        raise RequestError(f"payload: {len(req.payload)} bytes is far more than {elements} float32 values need")
    return ParsedRequest(request_id=req.request_id[:128], codec=req.codec, shape=shape, lengths=lengths,
                         input_lengths=input_lengths, payload=req.payload, params=params_from_proto(req.params),
                         return_output=req.return_output)


def tensor_to_proto(name: str, array: np.ndarray) -> pb.Tensor:
    arr = np.ascontiguousarray(array)
    dtype = arr.dtype.newbyteorder("<")
    return pb.Tensor(name=name, dtype=arr.dtype.name, shape=list(arr.shape), data=arr.astype(dtype).tobytes())


def tensor_from_proto(msg: pb.Tensor) -> np.ndarray:
    try:
        dtype = np.dtype(msg.dtype).newbyteorder("<")
    except TypeError:
        raise RequestError(f"tensor {msg.name!r}: unknown dtype {msg.dtype!r}") from None
    expected = int(np.prod(list(msg.shape), dtype=np.int64)) * dtype.itemsize
    if len(msg.data) != expected:
        raise RequestError(f"tensor {msg.name!r}: {len(msg.data)} bytes, expected {expected} for "
                           f"{msg.dtype} {list(msg.shape)}")
    return np.frombuffer(msg.data, dtype=dtype).reshape(list(msg.shape)).astype(msg.dtype)
