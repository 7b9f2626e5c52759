"""One graph input or output as the recipe declares it and the model card records it (no torch here, so
the card can be read where only onnxruntime is installed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. `shape` holds ints and symbolic names ("batch", "time", "frames")."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    role: str  # features | lengths | probabilities | logits | log_probs
    time_axis: int | None = None
    # For outputs with a time axis: the name of the output (or rule) that holds each row's valid length.
    lengths_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "role": self.role}
        if self.time_axis is not None:
            d["time_axis"] = self.time_axis
        if self.lengths_from is not None:
            d["lengths_from"] = self.lengths_from
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]), role=d["role"],
                   time_axis=d.get("time_axis"), lengths_from=d.get("lengths_from"))
