"""DeepSpeech2 (V3.0, unidirectional with Lookahead) run chunk by chunk, every piece of state explicit.

Built around the offline :class:`DeepSpeech` module it is given: it calls that module's own layers and
parameters (no copies), so one state_dict serves both. The offline forward of one utterance of T frames is
reproduced exactly; what it does in one pass is cut into three windowed stages and the RNNs:

=============  ==========================  ============================================================
stage          window over its input       state carried between chunks
=============  ==========================  ============================================================
conv1          11 frames, stride 2, pad 5  ``conv1_cache``: the last 10 feature frames
conv2          11 frames, stride 1, pad 5  ``conv2_cache``: the last 10 conv1 output frames
RNN layers     causal                      ``rnn_h`` (and ``rnn_c`` for LSTM): every layer's state
Lookahead      context frames ahead        ``lookahead_cache``: the last context-1 RNN outputs
=============  ==========================  ============================================================

plus ``frames_seen``, the number of feature frames consumed: it fixes which conv1 outputs are due (the
stride-2 phase) and how many outputs each stage has already emitted. A stage emits output ``i`` once the
last frame of its window has arrived, so it lags its input by the window's right half. At the end of a
stream (``end``) every stage emits the outputs whose centre frame is real, reading zeros past the last
frame, exactly the zero padding the offline convolutions and the Lookahead's ``F.pad`` apply to their own
input (not, for instance, conv1's output for made-up zero feature frames, which BatchNorm would make
non-zero).

BatchNorm runs in eval mode with its running statistics (per frame, as offline). MaskConv's mask is a
no-op for one utterance at its own length (it zeroes frames past the length, and there are none); each
stage zeroes the frames past its valid count instead, which is what padding past the end means.

Every stage emits a variable number of frames per call (stride 2 and odd chunks, and the flush), so the
graph has fixed-size outputs with a valid count per stream: ``probs`` (B, M, classes) and
``probs_lengths``. M covers the flush too; each RNN runs packed to its stream's valid count (the RNN
op's sequence_lens in ONNX), so the padding steps change no state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from families.deepspeech2.architecture import CONV_LAYERS
from families.deepspeech2.recipe import DeepSpeech
from core.streaming import StateSpec, StreamingSpec


class StreamingRefused(ValueError):
    """The model cannot stream (bidirectional) or the options make no sense."""


@dataclass(frozen=True)
class Stage:
    """A window over a stream: output i reads input frames [stride*i - left, stride*i + right]."""

    left: int
    right: int
    stride: int

    @property
    def kernel(self) -> int:
        return self.left + self.right + 1

    @property
    def cache(self) -> int:
        return self.left + self.right

    def emitted(self, pos: int, final: bool) -> int:
        """Outputs emitted once `pos` input frames arrived: all windows complete, or (final) all real centres."""
        if final:
            return -(-pos // self.stride)
        return max(0, pos - 1 - self.right + self.stride) // self.stride

    def max_new(self, new_frames: int) -> int:
        """The most outputs one call can emit when it brings at most `new_frames` frames (flush included)."""
        period = self.stride
        best = 0
        for pos in range(0, self.right + self.kernel + 2 * period + 1):
            before = self.emitted(pos, False)
            for n in range(new_frames + 1):
                best = max(best, self.emitted(pos + n, True) - before, self.emitted(pos + n, False) - before)
        return best


def _emitted(pos: torch.Tensor, final: torch.Tensor, stage: Stage) -> torch.Tensor:
    s = stage.stride
    running = torch.clamp(pos - 1 - stage.right + s, min=0)
    finished = pos + (s - 1)
    if s > 1:
        running = torch.div(running, s, rounding_mode="floor")
        finished = torch.div(finished, s, rounding_mode="floor")
    return torch.where(final, finished, running)


def _gather_time(buf: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """buf[..., start_b : start_b + length] per stream b (time last); indices past the end repeat the last
    frame, which only outputs past the valid count ever read."""
    idx = start.unsqueeze(1) + torch.arange(length, dtype=start.dtype)
    idx = torch.clamp(idx, max=buf.size(-1) - 1)
    view = [-1] + [1] * (buf.dim() - 2) + [length]
    return torch.gather(buf, buf.dim() - 1, idx.view(view).expand(*buf.shape[:-1], length))


def _zero_past(x: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """x (B, ..., T) with frames t >= count_b set to zero."""
    steps = torch.arange(x.size(-1), dtype=count.dtype)
    mask = steps.unsqueeze(0) >= count.unsqueeze(1)
    return x.masked_fill(mask.view([mask.size(0)] + [1] * (x.dim() - 2) + [mask.size(1)]), 0.0)


def _stage_window(stage: Stage, cache: torch.Tensor | None, new: torch.Tensor, new_count: torch.Tensor,
                  pos: torch.Tensor, final: torch.Tensor, out_frames: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One stage's bookkeeping: the input slice its due outputs read, their count, and the next cache.

    `new` (B, ..., N) holds `new_count` real frames; the frames past them and `right` more are zeros,
    read only at the end of the stream. Buffer index b is input frame pos - cache + b.
    """
    new = _zero_past(new, new_count)
    pad = new.new_zeros(*new.shape[:-1], stage.right)
    buf = torch.cat([t for t in (cache, new, pad) if t is not None and t.size(-1) > 0], dim=-1)
    before = _emitted(pos, torch.zeros_like(final), stage)
    count = _emitted(pos + new_count, final, stage) - before
    start = before * stage.stride + stage.right - pos
    window = _gather_time(buf, start, stage.stride * (out_frames - 1) + stage.kernel)
    next_cache = _gather_time(buf, new_count, stage.cache) if cache is not None else None
    return window, count, next_cache, before


class DeepSpeechStreaming(nn.Module):
    """``streaming_forward(chunk, chunk_lengths, end, *states) -> (probs, probs_lengths, *next_states)``."""

    def __init__(self, model: DeepSpeech, chunk_frames: int) -> None:
        super().__init__()
        cfg = model.cfg
        if cfg.bidirectional:
            raise StreamingRefused(
                "this checkpoint is bidirectional: its reverse RNN reads every frame up to the end of the "
                "utterance, so it cannot run chunk by chunk; streaming needs a V3.0 unidirectional model "
                "(model_cfg bidirectional: false, with its Lookahead layer)")
        if model.lookahead is None:
            raise StreamingRefused("a unidirectional DeepSpeech2 without its Lookahead layer is not a V3.0 model")
        if int(chunk_frames) < 1:
            raise StreamingRefused(f"chunk_frames must be a positive number of feature frames, not {chunk_frames}")
        self.model = model.eval()
        self.chunk_frames = int(chunk_frames)
        self.context = model.lookahead[0].context
        self.lstm = cfg.rnn_type == "lstm"
        (k1, k2) = (layer["kernel"][1] for layer in CONV_LAYERS)
        (p1, p2) = (layer["padding"][1] for layer in CONV_LAYERS)
        (s1, s2) = (layer["stride"][1] for layer in CONV_LAYERS)
        self.stages = (Stage(p1, k1 - 1 - p1, s1), Stage(p2, k2 - 1 - p2, s2), Stage(0, self.context - 1, 1))
        self.frames: list[int] = []  # most frames each stage can emit in one call
        n = self.chunk_frames
        for stage in self.stages:
            n = stage.max_new(n)
            self.frames.append(n)
        self.streaming_spec = self._spec()

    # -- the spec -------------------------------------------------------------------------------------
    def _spec(self) -> StreamingSpec:
        cfg = self.model.cfg
        conv1, conv2, look = self.stages
        conv_ch = self.model.conv.seq_module[0].out_channels
        freq_after_conv1 = (cfg.freq_bins + 2 * CONV_LAYERS[0]["padding"][0] - CONV_LAYERS[0]["kernel"][0]) \
            // CONV_LAYERS[0]["stride"][0] + 1
        layers, hidden = cfg.hidden_layers, cfg.hidden_size
        states = [
            StateSpec("frames_seen", "int64", ("batch",),
                      "feature frames consumed so far: the stride-2 phase and every stage's emitted count"),
            StateSpec("conv1_cache", "float32", ("batch", 1, cfg.freq_bins, conv1.cache),
                      f"the last {conv1.cache} feature frames (zeros at the start: conv1's left padding)"),
            StateSpec("conv2_cache", "float32", ("batch", conv_ch, freq_after_conv1, conv2.cache),
                      f"the last {conv2.cache} conv1 output frames (after BatchNorm and Hardtanh)"),
            StateSpec("rnn_h", "float32", (layers, "batch", hidden), "each RNN layer's hidden state"),
        ]
        if self.lstm:
            states.append(StateSpec("rnn_c", "float32", (layers, "batch", hidden), "each LSTM layer's cell state"))
        if look.cache:
            states.append(StateSpec("lookahead_cache", "float32", ("batch", hidden, look.cache),
                                    f"the last {look.cache} RNN outputs the Lookahead still needs"))
        return StreamingSpec(chunk_frames=self.chunk_frames, feature_shape=(1, cfg.freq_bins),
                             classes=len(cfg.labels), max_output_frames=self.frames[-1], states=tuple(states),
                             latency=self.latency())

    def latency(self) -> dict[str, Any]:
        conv1, conv2, look = self.stages
        # Output frame t is centred on feature frame 2t and needs feature frames up to
        # stride1 * (t + right of Lookahead + right of conv2) + right of conv1.
        lookahead_frames = conv1.stride * (look.right + conv2.right) + conv1.right
        frame_ms = self.model.cfg.window_stride * 1000.0
        delay = 0
        for pos in range(0, 4 * (lookahead_frames + self.chunk_frames)):
            if pos % self.chunk_frames:
                continue
            due = -(-pos // conv1.stride)  # outputs whose centre frame has arrived
            out = look.emitted(conv2.emitted(conv1.emitted(pos, False), False), False)
            delay = max(delay, due - out)
        return {
            "frame_ms": frame_ms,
            "lookahead_frames": lookahead_frames,
            "output_delay_frames": delay,
            "algorithmic_latency_ms": lookahead_frames * frame_ms,
            "chunk_wait_ms": (self.chunk_frames - 1) * frame_ms,
            "latency_ms": (lookahead_frames + self.chunk_frames - 1) * frame_ms,
            "max_output_frames_per_chunk": self.frames[-1],
            "output_frame_ms": conv1.stride * frame_ms,
        }

    # -- the computation ------------------------------------------------------------------------------
    def _conv(self, index: int, window: torch.Tensor) -> torch.Tensor:
        """Conv + BatchNorm + Hardtanh of conv block `index` over an unpadded time window."""
        seq = self.model.conv.seq_module
        conv, bn, act = seq[3 * index], seq[3 * index + 1], seq[3 * index + 2]
        x = F.conv2d(window, conv.weight, conv.bias, stride=conv.stride, padding=(conv.padding[0], 0))
        return act(bn(x))

    def _rnn_layer(self, layer: int, x: torch.Tensor, count: torch.Tensor, h: torch.Tensor,
                   c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x (T, B, H) of which each stream's first count_b steps are real; returns outputs and the state after
        the last real step (unchanged for a stream with none).

        Packing does what the offline BatchRNN does (and exports as the RNN op's sequence_lens): each stream's
        final state is taken at its own last step. Packing needs at least one step, so an empty stream runs
        one throw-away step and keeps its old state.
        """
        block = self.model.rnns[layer]
        if block.batch_norm is not None:
            x = block.batch_norm(x)
        steps = torch.clamp(count, min=1)
        packed = nn.utils.rnn.pack_padded_sequence(x, steps.cpu(), enforce_sorted=False)
        state = h.unsqueeze(0) if c is None else (h.unsqueeze(0), c.unsqueeze(0))
        y, new = block.rnn(packed, state)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=x.size(0))
        live = (count > 0).view(-1, 1)
        if c is None:
            return y, torch.where(live, new[0], h), None
        return y, torch.where(live, new[0][0], h), torch.where(live, new[1][0], c)

    def streaming_forward(self, chunk: torch.Tensor, chunk_lengths: torch.Tensor, end: torch.Tensor,
                          *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names = [s.name for s in self.streaming_spec.states]
        st = dict(zip(names, states))
        conv1, conv2, look = self.stages
        m1, m2, m3 = self.frames
        pos = st["frames_seen"]
        n = torch.clamp(chunk_lengths.to(torch.int64), min=0, max=self.chunk_frames)
        final = end.to(torch.bool)

        win, n1, cache1, pos2 = _stage_window(conv1, st["conv1_cache"], chunk, n, pos, final, m1)
        h1 = self._conv(0, win)
        win, n2, cache2, pos3 = _stage_window(conv2, st["conv2_cache"], h1, n1, pos2, final, m2)
        h2 = _zero_past(self._conv(1, win), n2)
        b, ch, freq, t = h2.shape
        x = h2.reshape(b, ch * freq, t).permute(2, 0, 1)  # (T, B, H) as offline

        hs, cs = [], []
        for layer in range(len(self.model.rnns)):
            c0 = st["rnn_c"][layer] if self.lstm else None
            x, h, c = self._rnn_layer(layer, x, n2, st["rnn_h"][layer], c0)
            hs.append(h)
            cs.append(c)

        win, n3, cache3, _ = _stage_window(look, st.get("lookahead_cache"), x.permute(1, 2, 0), n2, pos3, final, m3)
        lookahead, act = self.model.lookahead[0], self.model.lookahead[1]
        y = act(F.conv1d(win, lookahead.conv.weight, None, groups=lookahead.n_features))  # (B, H, T)
        y = self.model.fc(y.permute(2, 0, 1)).transpose(0, 1)  # (B, T, classes)
        probs = _zero_past(F.softmax(y, dim=-1).transpose(1, 2), n3).transpose(1, 2)

        nxt = {"frames_seen": pos + n, "conv1_cache": cache1, "conv2_cache": cache2, "rnn_h": torch.stack(hs)}
        if self.lstm:
            nxt["rnn_c"] = torch.stack(cs)
        if cache3 is not None:
            nxt["lookahead_cache"] = cache3
        return (probs, n3, *(nxt[name] for name in names))

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.streaming_forward(*args)


def streaming_model(model: DeepSpeech, chunk_frames: int) -> DeepSpeechStreaming:
    return DeepSpeechStreaming(model, chunk_frames).eval()
