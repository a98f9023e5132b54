"""Plain-PyTorch reference models with mmsegmentation's state_dict key names (mmseg itself is not installed).

Written from mmseg's published architecture: ResNetV1c (deep stem, contract dilation, output stride 8),
PSPHead, ASPPHead (DeepLabV3), FCNHead auxiliary head. Used by the segkd parity tests.
"""
import collections

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvModule(nn.Module):
    """mmcv ConvModule: conv (no bias) -> BN -> ReLU, keys `conv.*`, `bn.*`."""

    def __init__(self, cin, cout, k, padding=0, dilation=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)


ARCH = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNetV1c(nn.Module):
    def __init__(self, depth, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)):
        super().__init__()
        block, counts = ARCH[depth]
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, n in enumerate(counts):
            planes = 64 * 2 ** i
            stride, dilation = strides[i], dilations[i]
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            first = dilation // 2 if dilation > 1 else dilation
            blocks = [block(inplanes, planes, stride, first, downsample)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, dilation, None) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = [64 * 2 ** i * block.expansion for i in range(4)]

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs


def resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PSPHead(nn.Module):
    def __init__(self, cin, channels, num_classes, scales=(1, 2, 3, 6)):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        self.psp_modules = nn.ModuleList(
            [nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(cin, channels, 1)) for s in scales])
        self.bottleneck = ConvModule(cin + len(scales) * channels, channels, 3, padding=1)

    def forward(self, x):
        outs = [x] + [resize(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.conv_seg(self.dropout(self.bottleneck(torch.cat(outs, 1))))


class ASPPHead(nn.Module):
    def __init__(self, cin, channels, num_classes, dilations=(1, 12, 24, 36)):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(cin, channels, 1))
        self.aspp_modules = nn.ModuleList(
            [ConvModule(cin, channels, 1 if d == 1 else 3, padding=0 if d == 1 else d, dilation=d)
             for d in dilations])
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, 3, padding=1)

    def forward(self, x):
        outs = [resize(self.image_pool(x), x.shape[2:])] + [m(x) for m in self.aspp_modules]
        return self.conv_seg(self.dropout(self.bottleneck(torch.cat(outs, 1))))


class FCNHead(nn.Module):
    def __init__(self, cin, channels, num_classes):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        self.convs = nn.Sequential(ConvModule(cin, channels, 3, padding=1))

    def forward(self, x):
        return self.conv_seg(self.dropout(self.convs(x)))


class EncoderDecoder(nn.Module):
    """Returns (logits, aux_logits) at head resolution."""

    def __init__(self, arch, depth, num_classes):
        super().__init__()
        self.backbone = ResNetV1c(depth)
        c = self.backbone.out_channels
        small = depth in (18, 34)
        head_ch, aux_ch = (128, 64) if small else (512, 256)
        head = PSPHead if arch == "pspnet" else ASPPHead
        self.decode_head = head(c[3], head_ch, num_classes)
        self.auxiliary_head = FCNHead(c[2], aux_ch, num_classes)

    def forward(self, x):
        feats = self.backbone(x)
        return self.decode_head(feats[3]), self.auxiliary_head(feats[2])


def randomize(model, generator):
    """Random weights and BN statistics, scaled so activations stay O(1) through deep nets."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                m.num_batches_tracked.fill_(int(torch.randint(0, 1000, (1,), generator=generator)))


def count(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    print("pspnet r18", count(EncoderDecoder("pspnet", 18, 19)))
    print("pspnet r101", count(EncoderDecoder("pspnet", 101, 19)))
