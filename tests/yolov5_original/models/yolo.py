"""Model and detection head of the original YOLOv5 architecture (test fixture; see ``models/__init__.py``)."""

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import nn

from models.common import (
    C3,
    C3TR,
    SPP,
    SPPF,
    Bottleneck,
    BottleneckCSP,
    C3Ghost,
    C3x,
    Classify,
    Concat,
    Conv,
    CrossConv,
    DWConv,
    DWConvTranspose2d,
    Focus,
    GhostBottleneck,
    GhostConv,
    Proto,
)

_CHANNEL_BLOCKS = {
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
}
_CSP = {"BottleneckCSP", "C3", "C3x", "C3TR", "C3Ghost"}


class Detect(nn.Module):
    """``legacy_buffers``: releases up to 5 kept ``anchor_grid`` as a saved buffer; later ones cache lists."""

    def __init__(self, nc=80, anchors=(), ch=(), legacy_buffers=False):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors), len(anchors[0]) // 2
        a = torch.tensor(anchors).float().view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        if legacy_buffers:
            self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        else:
            self.grid = [torch.empty(0) for _ in range(self.nl)]
            self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.stride = None

    def forward(self, xs):
        out = []
        for i, x in enumerate(xs):
            p = self.m[i](x)
            n, _, h, w = p.shape
            p = p.view(n, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            gx, gy = torch.meshgrid(torch.arange(w, dtype=p.dtype), torch.arange(h, dtype=p.dtype), indexing="xy")
            grid = torch.stack((gx, gy), 2).view(1, 1, h, w, 2)
            anchor_px = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2)
            y = p.contiguous().clone()
            y[..., 0:2] = (p[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
            y[..., 2:4] = (p[..., 2:4] * 2) ** 2 * anchor_px
            out.append(y.view(n, -1, self.no))
        return torch.cat(out, 1)


class Segment(Detect):
    def __init__(self, nc=80, anchors=(), nm=32, npr=256, ch=()):
        super().__init__(nc, anchors, ch)
        self.proto = Proto(ch[0], npr, nm)


def parse_model(cfg, legacy_buffers):
    nc, gd, gw, anchors = cfg["nc"], cfg["depth_multiple"], cfg["width_multiple"], cfg["anchors"]
    na = len(anchors[0]) // 2
    no = na * (nc + 5)
    layers, ch = [], [3]
    for i, (f, n, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
        args = [{"nc": nc, "anchors": anchors, "None": None}.get(a, a) if isinstance(a, str) else a for a in args]
        n = max(round(n * gd), 1) if n > 1 else n
        if name in _CHANNEL_BLOCKS:
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = math.ceil(c2 * gw / 8) * 8
            args = [c1, c2, *args[1:]]
            if name in _CSP:
                args.insert(2, n)
                n = 1
            block = _CHANNEL_BLOCKS[name]
        elif name == "Concat":
            c2, block = sum(ch[x] for x in f), Concat
        elif name == "Detect":
            args.append([ch[x] for x in f])
            args.append(legacy_buffers)
            block, c2 = Detect, None
        elif name == "Segment":
            args.append([ch[x] for x in f])
            block, c2 = Segment, None
        elif name == "nn.Upsample":
            c2, block = ch[f], nn.Upsample
        elif name == "nn.MaxPool2d":
            c2, block = ch[f], nn.MaxPool2d
        else:
            raise KeyError(f"the fixture does not know {name}")
        m = nn.Sequential(*(block(*args) for _ in range(n))) if n > 1 else block(*args)
        m.i, m.f, m.type = i, f, name
        layers.append(m)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers)


class Model(nn.Module):
    def __init__(self, cfg, legacy_buffers=False):
        super().__init__()
        self.yaml = deepcopy(cfg)
        self.model = parse_model(deepcopy(cfg), legacy_buffers)
        self.names = [str(i) for i in range(cfg["nc"])]
        self.inplace = True
        head = self.model[-1]
        head.stride = torch.ones(head.nl)
        s = 256
        seen = []
        hook = head.register_forward_pre_hook(lambda m, args: seen.extend(a.shape[-2] for a in args[0]))
        with torch.no_grad():
            self.eval()(torch.zeros(1, 3, s, s))
        hook.remove()
        head.stride = torch.tensor([s / h for h in seen])
        head.anchors /= head.stride.view(-1, 1, 1)
        self.stride = head.stride
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03

    def forward(self, x):
        saved = []
        for m in self.model:
            if m.f != -1:
                x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
            x = m(x)
            saved.append(x)
        return x


class DetectionModel(Model):
    """The class name of releases 6.2 onwards (``Model`` is an alias there)."""


class SegmentationModel(DetectionModel):
    pass


class ClassificationModel(nn.Module):
    def __init__(self, c1=16, nc=2):
        super().__init__()
        self.model = nn.Sequential(Conv(3, c1, 3, 2), Classify(c1, nc))
        self.yaml = None
        self.names = [str(i) for i in range(nc)]
