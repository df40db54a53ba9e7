"""The building blocks of the original YOLOv5 architecture, written for olvf from its published description.

Each block is named as in the repository's model configurations and keeps the
same submodule names (``conv``, ``bn``, ``cv1``, ``m``, ...), so that a
checkpoint's weights load by name. Activations and BatchNorm settings are
placeholders here: :mod:`olvf.export.yolov5_original` sets them from what the
checkpoint records for every module (releases differ: LeakyReLU, Hardswish,
SiLU; BatchNorm eps 1e-3).

Detection is the anchor-based head: per level a 1x1 convolution to
``anchors x (5 + nc)`` channels, then ``xy = (2 sigmoid - 0.5 + cell) * stride``
and ``wh = (2 sigmoid)^2 * anchor`` (the decoding of releases 2 to 7), with
the cell grid computed from the feature map, never taken from a cache.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence

import torch
from torch import nn


def same_padding(kernel: int | Sequence[int], dilation: int = 1) -> int | list[int]:
    """Padding that keeps the spatial size at stride 1 (odd kernels)."""
    if isinstance(kernel, int):
        return (dilation * (kernel - 1) + 1) // 2
    return [(dilation * (k - 1) + 1) // 2 for k in kernel]


class Conv(nn.Module):
    """Convolution without bias, BatchNorm, activation."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int | Sequence[int] = 1,
        s: int | Sequence[int] = 1,
        p: int | Sequence[int] | None = None,
        g: int = 1,
        d: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        padding = same_padding(k, d) if p is None else p
        self.conv = nn.Conv2d(c_in, c_out, k, s, padding, dilation=d, groups=g, bias=False)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(c_out)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Depth-wise convolution: groups = gcd of the channel counts."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, d: int = 1, act: bool = True) -> None:
        super().__init__(c_in, c_out, k, s, g=math.gcd(c_in, c_out), d=d, act=act)


class DWConvTranspose2d(nn.ConvTranspose2d):
    """Depth-wise transposed convolution (with bias, no BatchNorm)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, p1: int = 0, p2: int = 0) -> None:
        super().__init__(c_in, c_out, k, s, p1, p2, groups=math.gcd(c_in, c_out))


class Focus(nn.Module):
    """Space to depth (each 2x2 block's four pixels become channels), then a Conv: the stem before release 6."""

    def __init__(
        self, c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = Conv(4 * c_in, c_out, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channel order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
        even_cols, odd_cols = x[..., ::2], x[..., 1::2]
        parts = (even_cols[..., ::2, :], even_cols[..., 1::2, :], odd_cols[..., ::2, :], odd_cols[..., 1::2, :])
        return self.conv(torch.cat(parts, dim=1))


class Bottleneck(nn.Module):
    """1x1 Conv to ``e * c_out`` channels, 3x3 Conv back, plus the input when the shapes allow."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = Conv(c_in, hidden, 1, 1)
        self.cv2 = Conv(hidden, c_out, 3, 1, g=g)
        self.residual = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.residual else y


class CrossConv(nn.Module):
    """A 1xk then kx1 Conv pair, with an optional residual."""

    def __init__(
        self, c_in: int, c_out: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False
    ) -> None:
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = Conv(c_in, hidden, (1, k), (1, s))
        self.cv2 = Conv(hidden, c_out, (k, 1), (s, 1), g=g)
        self.residual = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.residual else y


class BottleneckCSP(nn.Module):
    """Cross Stage Partial block of the early releases: two paths joined by BatchNorm, activation, Conv."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = Conv(c_in, hidden, 1, 1)
        self.cv2 = nn.Conv2d(c_in, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = Conv(2 * hidden, c_out, 1, 1)
        self.bn = nn.BatchNorm2d(2 * hidden)
        self.act: nn.Module = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        through = self.cv3(self.m(self.cv1(x)))
        around = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((through, around), dim=1))))


class C3(nn.Module):
    """CSP block with three Convs (release 4 onwards): ``n`` blocks on one path, a 1x1 Conv on the other."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = Conv(c_in, hidden, 1, 1)
        self.cv2 = Conv(c_in, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c_out, 1)
        self.m: nn.Module = self.blocks(hidden, n, shortcut, g)

    def blocks(self, hidden: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class C3x(C3):
    """C3 whose blocks are cross convolutions."""

    def blocks(self, hidden: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(CrossConv(hidden, hidden, 3, 1, g, 1.0, shortcut) for _ in range(n)))


class TransformerLayer(nn.Module):
    """Multi-head self-attention and a two-layer projection, each with a residual; no LayerNorm."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.q = nn.Linear(channels, channels, bias=False)
        self.k = nn.Linear(channels, channels, bias=False)
        self.v = nn.Linear(channels, channels, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=channels, num_heads=heads)
        self.fc1 = nn.Linear(channels, channels, bias=False)
        self.fc2 = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ma(self.q(x), self.k(x), self.v(x), need_weights=False)[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    """Feature map -> sequence of positions with a learned linear position term -> transformer layers -> map."""

    def __init__(self, c_in: int, c_out: int, heads: int, layers: int) -> None:
        super().__init__()
        self.conv = Conv(c_in, c_out) if c_in != c_out else None
        self.linear = nn.Linear(c_out, c_out)
        self.tr = nn.Sequential(*(TransformerLayer(c_out, heads) for _ in range(layers)))
        self.c2 = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        batch, _, height, width = x.shape
        sequence = x.flatten(2).permute(2, 0, 1)  # (positions, batch, channels)
        out = self.tr(sequence + self.linear(sequence))
        return out.permute(1, 2, 0).reshape(batch, self.c2, height, width)


class C3TR(C3):
    """C3 whose blocks are one transformer block of ``n`` layers with 4 heads."""

    def blocks(self, hidden: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return TransformerBlock(hidden, hidden, 4, n)


class GhostConv(nn.Module):
    """Half the output channels from a Conv, the other half from a cheap 5x5 depth-wise Conv of those."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True) -> None:
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden, k, s, None, g, act=act)
        self.cv2 = Conv(hidden, hidden, 5, 1, None, hidden, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), dim=1)


class GhostBottleneck(nn.Module):
    """Two GhostConvs (a depth-wise Conv between them at stride 2) plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        hidden = c_out // 2
        self.conv = nn.Sequential(
            GhostConv(c_in, hidden, 1, 1),
            DWConv(hidden, hidden, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(hidden, c_out, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Sequential(DWConv(c_in, c_in, k, s, act=False), Conv(c_in, c_out, 1, 1, act=False))
            if s == 2
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 whose blocks are Ghost bottlenecks."""

    def blocks(self, hidden: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(GhostBottleneck(hidden, hidden) for _ in range(n)))


class SPP(nn.Module):
    """Spatial pyramid pooling: a 1x1 Conv, max pools of several sizes side by side, a 1x1 Conv."""

    def __init__(self, c_in: int, c_out: int, k: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c_out, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(size, 1, size // 2) for size in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x, *(pool(x) for pool in self.m)], dim=1))


class SPPF(nn.Module):
    """SPP with one pool applied three times in a row (5, 9 and 13 pixel windows in effect)."""

    def __init__(self, c_in: int, c_out: int, k: int = 5) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c_out, 1, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.cv1(x)]
        for _ in range(3):
            pooled.append(self.m(pooled[-1]))
        return self.cv2(torch.cat(pooled, dim=1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=self.d)


class Detect(nn.Module):
    """Anchor-based head: rows ``cx, cy, w, h, objectness, class scores`` in input pixels, levels in order.

    ``anchors`` is kept as the checkpoint stores it (per level, in units of
    that level's stride) so that it loads by name; ``strides`` must be set
    before the first forward (the rebuild measures them).
    """

    anchors: torch.Tensor

    def __init__(self, nc: int, anchors: int | Sequence[Sequence[float]], channels: Sequence[int]) -> None:
        super().__init__()
        levels = len(channels)
        per_level = anchors if isinstance(anchors, int) else len(anchors[0]) // 2
        self.nc, self.no, self.nl, self.na = nc, nc + 5, levels, per_level
        self.register_buffer("anchors", torch.zeros(levels, per_level, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * per_level, 1) for c in channels)
        self.strides: tuple[float, ...] = ()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        rows = []
        for level, (conv, x) in enumerate(zip(self.m, features)):
            x = conv(x)
            if x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()  # decoded in float32 even in an FP16 model: pixel coordinates need the bits
            batch, _, ny, nx = x.shape
            x = x.view(batch, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
            stride = self.strides[level]
            ys, xs = torch.meshgrid(
                torch.arange(ny, dtype=x.dtype, device=x.device),
                torch.arange(nx, dtype=x.dtype, device=x.device),
                indexing="ij",
            )
            cells = torch.stack((xs, ys), dim=-1).view(1, 1, ny, nx, 2)
            anchor_px = (self.anchors[level].to(x.dtype) * stride).view(1, self.na, 1, 1, 2)
            xy = (x[..., :2] * 2 - 0.5 + cells) * stride
            wh = (x[..., 2:4] * 2) ** 2 * anchor_px
            rows.append(torch.cat((xy, wh, x[..., 4:]), dim=-1).reshape(batch, -1, self.no))
        return torch.cat(rows, dim=1)


class Yolov5(nn.Module):
    """Layers run in order; each takes the previous output or the outputs of the layers its ``from`` names."""

    def __init__(self, layers: Sequence[nn.Module], sources: Sequence[int | list[int]]) -> None:
        super().__init__()
        self.model = nn.ModuleList(layers)
        self.sources = [list(s) if isinstance(s, (list, tuple)) else int(s) for s in sources]

    @property
    def head(self) -> Detect:
        head = self.model[-1]
        assert isinstance(head, Detect)
        return head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        x: torch.Tensor | list[torch.Tensor] = images
        for source, layer in zip(self.sources, self.model):
            if isinstance(source, list):
                x = [outputs[-1] if j == -1 else outputs[j] for j in source]
            elif source != -1:
                x = outputs[source]
            x = layer(x)
            outputs.append(x)  # type: ignore[arg-type]
        return x  # type: ignore[return-value]

    def level_shapes(self, size: int) -> list[tuple[int, int]]:
        """Feature map sizes entering the head for a ``size`` x ``size`` input (shapes only, no arithmetic)."""
        probe = copy.deepcopy(self).to("meta").eval()
        seen: list[tuple[int, int]] = []

        def stop(_module: nn.Module, args: tuple[list[torch.Tensor]]) -> None:
            seen.extend((int(f.shape[2]), int(f.shape[3])) for f in args[0])
            raise _ShapesSeen

        probe.head.register_forward_pre_hook(stop)
        with contextlib.suppress(_ShapesSeen), torch.no_grad():
            probe(torch.zeros(1, 3, size, size, device="meta"))
        return seen


class _ShapesSeen(Exception):
    pass


# Blocks whose first two arguments are input and output channels, the output scaled by the width multiple.
CHANNEL_BLOCKS: dict[str, type[nn.Module]] = {
    "Conv": Conv,
    "DWConv": DWConv,
    "DWConvTranspose2d": DWConvTranspose2d,
    "Focus": Focus,
    "Bottleneck": Bottleneck,
    "CrossConv": CrossConv,
    "BottleneckCSP": BottleneckCSP,
    "C3": C3,
    "C3x": C3x,
    "C3TR": C3TR,
    "C3Ghost": C3Ghost,
    "GhostConv": GhostConv,
    "GhostBottleneck": GhostBottleneck,
    "SPP": SPP,
    "SPPF": SPPF,
    "nn.ConvTranspose2d": nn.ConvTranspose2d,
}
# Of those, the ones whose repeat count goes inside the block (third argument) rather than stacking it.
REPEATED_INSIDE = frozenset({"BottleneckCSP", "C3", "C3x", "C3TR", "C3Ghost"})
# Blocks that keep the channel count of their input.
PASS_THROUGH: dict[str, type[nn.Module]] = {
    "nn.Upsample": nn.Upsample,
    "nn.MaxPool2d": nn.MaxPool2d,
    "nn.ZeroPad2d": nn.ZeroPad2d,
    "nn.Identity": nn.Identity,
}

# Activations the releases used, by class name (torch.nn or the repository's own utils.activations).
ACTIVATIONS = ("SiLU", "Hardswish", "LeakyReLU", "ReLU", "ReLU6", "Sigmoid", "Tanh", "Mish", "Identity")


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(nn.functional.softplus(x))


def activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    """An activation module from its class name (one of :data:`ACTIVATIONS`)."""
    if name == "LeakyReLU":
        return nn.LeakyReLU(negative_slope)
    if name == "Mish":
        return Mish()
    return {
        "SiLU": nn.SiLU,
        "Hardswish": nn.Hardswish,
        "ReLU": nn.ReLU,
        "ReLU6": nn.ReLU6,
        "Sigmoid": nn.Sigmoid,
        "Tanh": nn.Tanh,
        "Identity": nn.Identity,
    }[name]()
