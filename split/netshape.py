"""A rate-limited link for measured split runs: a veth pair into a network namespace, shaped with tc tbf.

    with ShapedLink(10e6) as link:          # 10 Mbit/s both ways
        cmd = link.exec_prefix + ["python", "-m", "split", "serve", "--host", link.server_ip, ...]
        ...                                 # the edge (this process) talks to link.server_ip
        link.set_rate(1e6)

The server runs inside the namespace, the edge stays in the root namespace, and every packet between
them crosses the veth pair, whose both ends carry a token-bucket filter at the given rate. tc netem
(delay) is not available on these machines' kernels, so the round-trip time is not added here: the
server sleeps it (`serve --added-delay-ms`), and the reports say so. Creating namespaces needs root
(CAP_NET_ADMIN); where that is refused `ShapingUnavailable` says why, and callers fall back to pacing
on loopback (the edge sleeps each request's bytes / rate before sending: `EdgeClient(pace_bps=...)`).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

# Bucket depth: one full-size frame (tbf needs at least that; it segments larger GSO packets itself).
# A token bucket lets a message that fits in the bucket through at line rate, so messages under ~1.6 kB
# arrive sooner than bytes / rate; anything larger is paced at the rate.
BURST_BYTES = 1600
# Queue length in time at the shaped rate before tbf drops (long enough for TCP to fill the link).
QUEUE_LATENCY_MS = 400


class ShapingUnavailable(RuntimeError):
    """Namespaces / veth / tc cannot be used here (reason in the message)."""


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ShapingUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}")


class ShapedLink:
    def __init__(self, rate_bps: float) -> None:
        tag = uuid.uuid4().hex[:6]
        self.namespace = f"split-{tag}"
        self.edge_dev, self.server_dev = f"spe{tag}", f"sps{tag}"
        # A random /30 in 10.200-249.x.x, so links set up at the same time (parallel tests) do not collide.
        r = uuid.uuid4().int
        base = f"10.{200 + r % 50}.{(r >> 8) % 256}.{((r >> 16) % 64) * 4}"
        prefix, last = base.rsplit(".", 1)
        self.edge_ip, self.server_ip = f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"
        self.rate_bps = rate_bps
        self._up = False

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def __enter__(self) -> "ShapedLink":
        if shutil.which("ip") is None or shutil.which("tc") is None:
            raise ShapingUnavailable("the `ip` and `tc` commands (iproute2) are not installed")
        if os.geteuid() != 0:
            raise ShapingUnavailable("network namespaces need root (CAP_NET_ADMIN)")
        try:
            _run(["ip", "netns", "add", self.namespace])
            self._up = True
            _run(["ip", "link", "add", self.edge_dev, "type", "veth", "peer", "name", self.server_dev])
            _run(["ip", "link", "set", self.server_dev, "netns", self.namespace])
            _run(["ip", "addr", "add", f"{self.edge_ip}/30", "dev", self.edge_dev])
            _run(["ip", "link", "set", self.edge_dev, "up"])
            ns = self.exec_prefix
            _run(ns + ["ip", "addr", "add", f"{self.server_ip}/30", "dev", self.server_dev])
            _run(ns + ["ip", "link", "set", self.server_dev, "up"])
            _run(ns + ["ip", "link", "set", "lo", "up"])
            self._qdisc("add")
        except ShapingUnavailable:
            self.close()
            raise
        return self

    def _qdisc(self, verb: str) -> None:
        args = ["tbf", "rate", f"{int(self.rate_bps)}bit", "burst", str(BURST_BYTES),
                "latency", f"{QUEUE_LATENCY_MS}ms"]
        _run(["tc", "qdisc", verb, "dev", self.edge_dev, "root"] + args)
        _run(self.exec_prefix + ["tc", "qdisc", verb, "dev", self.server_dev, "root"] + args)

    def set_rate(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._qdisc("change")

    def sent_bytes(self) -> tuple[int, int]:
        """Bytes tbf has sent so far edge -> server and server -> edge (IP packets, headers included)."""
        def sent(cmd: list[str]) -> int:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            m = re.search(r"Sent (\d+) bytes", out)
            return int(m.group(1)) if m else 0

        return (sent(["tc", "-s", "qdisc", "show", "dev", self.edge_dev]),
                sent(self.exec_prefix + ["tc", "-s", "qdisc", "show", "dev", self.server_dev]))

    def close(self) -> None:
        if self._up:
            # Deleting the namespace deletes the veth end inside it, and with it the pair.
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
            subprocess.run(["ip", "link", "del", self.edge_dev], capture_output=True)
            self._up = False

    def __exit__(self, *exc: object) -> None:
        self.close()
