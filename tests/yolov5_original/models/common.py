"""Blocks of the original YOLOv5 architecture (test fixture; see ``models/__init__.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# What Conv uses when a block asks for an activation; the writer of a checkpoint sets it per release.
ACTIVATION = {"factory": nn.SiLU}


def _act(act):
    if act is True:
        return ACTIVATION["factory"]()
    return act if isinstance(act, nn.Module) else nn.Identity()


def _pad(k):
    return k // 2 if isinstance(k, int) else tuple(x // 2 for x in k)


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, _pad(k) if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _act(act)

    def forward(self, x):
        c, bn = self.conv, self.bn
        y = F.conv2d(x, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
        if self.training:  # statistics are being calibrated
            return self.act(bn(y))
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        y = (y - bn.running_mean[None, :, None, None]) * scale[None, :, None, None] + bn.bias[None, :, None, None]
        return self.act(y)


class DWConv(Conv):
    def __init__(self, c1, c2, k=1, s=1, d=1, act=True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class DWConvTranspose2d(nn.ConvTranspose2d):
    def __init__(self, c1, c2, k=1, s=1, p1=0, p2=0):
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))

    def forward(self, x):
        return F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups
        )


class Focus(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x):
        n, c, h, w = x.shape
        # pixel_unshuffle orders channels (c, dy, dx); Focus wants blocks (dx, dy) of all channels.
        u = F.pixel_unshuffle(x, 2).view(n, c, 2, 2, h // 2, w // 2)
        return self.conv(u.permute(0, 3, 2, 1, 4, 5).reshape(n, 4 * c, h // 2, w // 2))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        out = self.cv2(self.cv1(x))
        if self.add:
            out = out + x
        return out


class CrossConv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, g=1, e=1.0, shortcut=False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        out = self.cv2(self.cv1(x))
        return out + x if self.add else out


class BottleneckCSP(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = ACTIVATION["factory"]()
        self.m = nn.Sequential(*[Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)])

    def forward(self, x):
        a = F.conv2d(self.m(self.cv1(x)), self.cv3.weight)
        b = F.conv2d(x, self.cv2.weight)
        bn = self.bn
        joined = F.batch_norm(
            torch.cat([a, b], 1),
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            self.training,
            0.1 if bn.momentum is None else bn.momentum,
            bn.eps,
        )
        return self.cv4(self.act(joined))


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*[Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)])

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class C3x(C3):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*[CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)])


class TransformerLayer(nn.Module):
    def __init__(self, c, num_heads):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x):  # x: (length, batch, c); attention written out rather than nn.MultiheadAttention's
        length, batch, c = x.shape
        heads = self.ma.num_heads
        wq, wk, wv = self.ma.in_proj_weight.chunk(3)
        bq, bk, bv = self.ma.in_proj_bias.chunk(3)
        q = (self.q(x) @ wq.T + bq).reshape(length, batch * heads, c // heads).transpose(0, 1)
        k = (self.k(x) @ wk.T + bk).reshape(length, batch * heads, c // heads).transpose(0, 1)
        v = (self.v(x) @ wv.T + bv).reshape(length, batch * heads, c // heads).transpose(0, 1)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c // heads), dim=-1)
        attended = (weights @ v).transpose(0, 1).reshape(length, batch, c)
        x = attended @ self.ma.out_proj.weight.T + self.ma.out_proj.bias + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    def __init__(self, c1, c2, num_heads, num_layers):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*[TransformerLayer(c2, num_heads) for _ in range(num_layers)])
        self.c2 = c2

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        n, c, h, w = x.shape
        p = x.reshape(n, c, h * w).permute(2, 0, 1)
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(n, c, h, w)


class C3TR(C3):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = TransformerBlock(int(c2 * e), int(c2 * e), 4, n)


class GhostConv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x):
        y = self.cv1(x)
        return torch.cat([y, self.cv2(y)], 1)


class GhostBottleneck(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()
        )

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*[GhostBottleneck(c_, c_) for _ in range(n)])


class SPP(nn.Module):
    def __init__(self, c1, c2, k=(5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k])

    def forward(self, x):
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [F.max_pool2d(x, p.kernel_size, 1, p.padding) for p in self.m], 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        # Three chained 5x5 pools are 5, 9 and 13 pixel windows: computed here as SPP would.
        k = self.m.kernel_size
        wide = [F.max_pool2d(x, size, 1, size // 2) for size in (k, 2 * k - 1, 3 * k - 2)]
        return self.cv2(torch.cat([x, *wide], 1))


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class Proto(nn.Module):
    def __init__(self, c1, c_=256, c2=32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)


class Classify(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = Conv(c1, 16, 1, 1)
        self.linear = nn.Linear(16, c2)
