#!/usr/bin/python3
"""Reference implementations of segkd's losses in PyTorch, written from the papers / CIRKD / mmrazor definitions.

Usage: /usr/bin/python3 losses_ref.py DIR
DIR holds <case>.pt (a dict of tensors written by test_losses_parity: inputs "s.*"/"t.*", "label", projector
"param.*", segkd's "value" and "grad.*") and <case>.json (the [[distill]] options). For each case this script
recomputes the value and the gradient w.r.t. every student input and prints "OK <case> ..." or "FAIL <case> ...";
exit status 1 if any case fails. Tolerances: value 1e-5 relative; gradient 1e-4 of the gradient's max magnitude.
"""
import glob
import json
import os
import sys

import torch
import torch.nn.functional as F


def resize(x, hw):
    if tuple(x.shape[2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


def nearest_label(label, hw):
    return F.interpolate(label.unsqueeze(1).float(), size=tuple(hw), mode="nearest").squeeze(1).long()


def seg_ce(logits, label, ignore, weight=None):
    up = resize(logits, label.shape[1:])
    return F.cross_entropy(up, label, weight=weight, ignore_index=ignore)


def logit_kd(s, t, label, o):
    tau = o["tau"]
    if o["resolution"] == "label":
        s, t = resize(s, label.shape[1:]), resize(t, label.shape[1:])
    else:
        s = resize(s, t.shape[2:])
    p_t = F.softmax(t / tau, dim=1)
    kl = (p_t * (F.log_softmax(t / tau, dim=1) - F.log_softmax(s / tau, dim=1))).sum(1)
    if o["mask_ignore"]:
        valid = nearest_label(label, t.shape[2:]) != o["ignore_index"]
        return kl[valid].mean() * tau ** 2
    return kl.mean() * tau ** 2


def projector(x, params, i, kind):
    w = params["proj.%d.0.weight" % i]
    if kind == "conv1x1_bn":
        y = F.conv2d(x, w)
        return F.batch_norm(y, None, None, params["proj.%d.1.weight" % i], params["proj.%d.1.bias" % i],
                            training=True, momentum=0.1, eps=1e-5)
    return F.conv2d(x, w, params["proj.%d.0.bias" % i])


def fitnets(S, T, params, o):
    total = 0
    for i, (sn, tn) in enumerate(zip(o["student"], o["teacher"])):
        s, t = projector(S[sn], params, i, o["projector"]), T[tn]
        s = resize(s, t.shape[2:])
        if o["normalize"] == "channel":
            s = F.instance_norm(s, eps=1e-5)
            t = F.instance_norm(t, eps=1e-5)
        total = total + F.mse_loss(s, t)
    return total / len(o["student"])


def channel_wise_divergence(preds_S, preds_T, tau):
    # mmrazor ChannelWiseDivergence
    N, C, H, W = preds_S.shape
    softmax_pred_T = F.softmax(preds_T.reshape(-1, W * H) / tau, dim=1)
    loss = torch.sum(softmax_pred_T * F.log_softmax(preds_T.reshape(-1, W * H) / tau, dim=1)
                     - softmax_pred_T * F.log_softmax(preds_S.reshape(-1, W * H) / tau, dim=1)) * tau ** 2
    return loss / (C * N)


def cwd(S, T, params, o):
    if o["on"] == "logits":
        return channel_wise_divergence(resize(S["logits"], T["logits"].shape[2:]), T["logits"], o["tau"])
    total, k = 0, 0
    for sn, tn in zip(o["student"], o["teacher"]):
        s, t = S[sn], T[tn]
        if s.shape[1] != t.shape[1]:
            s = projector(s, params, k, o["projector"])
            k += 1
        total = total + channel_wise_divergence(resize(s, t.shape[2:]), t, o["tau"])
    return total / len(o["student"])


def similarity(feat):
    # CIRKD sim matrix (without CIRKD's detach of the norm: segkd differentiates through it)
    norm = ((feat ** 2).sum(dim=1) ** 0.5).reshape(feat.shape[0], 1, feat.shape[2], feat.shape[3]) + 1e-8
    feat = (feat / norm).reshape(feat.shape[0], feat.shape[1], -1)
    return torch.einsum("icm,icn->imn", [feat, feat])


def pairwise(S, T, o):
    total = 0
    k = o["pool_kernel"]
    for sn, tn in zip(o["student"], o["teacher"]):
        t = T[tn]
        s = resize(S[sn], t.shape[2:])
        pool = torch.nn.MaxPool2d(kernel_size=k, stride=k, padding=0, ceil_mode=True)
        fs, ft = pool(s), pool(t)
        sim_err = ((similarity(ft) - similarity(fs)) ** 2) / ((ft.shape[-1] * ft.shape[-2]) ** 2) / ft.shape[0]
        total = total + sim_err.sum()
    return total / len(o["student"])


def ifv(feat_S, feat_T, target, num_classes):
    # CIRKD CriterionIFV, with the label already at feature size
    tar_S = target.unsqueeze(1).float().expand(feat_S.size())
    tar_T = target.unsqueeze(1).float().expand(feat_T.size())
    center_S, center_T = feat_S.clone(), feat_T.clone()
    for i in range(num_classes):
        mask_S = (tar_S == i).float()
        mask_T = (tar_T == i).float()
        center_S = (1 - mask_S) * center_S + mask_S * (
            (mask_S * feat_S).sum(-1).sum(-1) / (mask_S.sum(-1).sum(-1) + 1e-6)).unsqueeze(-1).unsqueeze(-1)
        center_T = (1 - mask_T) * center_T + mask_T * (
            (mask_T * feat_T).sum(-1).sum(-1) / (mask_T.sum(-1).sum(-1) + 1e-6)).unsqueeze(-1).unsqueeze(-1)
    cos = torch.nn.CosineSimilarity(dim=1)
    return F.mse_loss(cos(feat_S, center_S), cos(feat_T, center_T))


def ifvd(S, T, label, o):
    total = 0
    for sn, tn in zip(o["student"], o["teacher"]):
        t = T[tn]
        s = resize(S[sn], t.shape[2:])
        lab = nearest_label(label, t.shape[2:])
        classes = int(lab[lab != o["ignore_index"]].max()) + 1
        total = total + ifv(s, t, lab, classes)
    return total / len(o["student"])


def attention(x):
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def at(S, T, o):
    total = 0
    for sn, tn in zip(o["student"], o["teacher"]):
        t = T[tn]
        s = resize(S[sn], t.shape[2:])
        total = total + (attention(s) - attention(t)).pow(2).mean()
    return total / len(o["student"])


def dist(S, T, o):
    # DIST (Huang et al. 2022), segmentation logits flattened to (pixels, classes)
    def cosine_similarity(a, b, eps=1e-8):
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    def pearson_correlation(a, b, eps=1e-8):
        return cosine_similarity(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1), eps)

    def inter_class_relation(y_s, y_t):
        return 1 - pearson_correlation(y_s, y_t).mean()

    def intra_class_relation(y_s, y_t):
        return inter_class_relation(y_s.transpose(0, 1), y_t.transpose(0, 1))

    t = T["logits"]
    s = resize(S["logits"], t.shape[2:])
    c = t.shape[1]
    tau = o["tau"]
    z_s = s.permute(0, 2, 3, 1).reshape(-1, c)
    z_t = t.permute(0, 2, 3, 1).reshape(-1, c)
    y_s, y_t = (z_s / tau).softmax(dim=1), (z_t / tau).softmax(dim=1)
    inter = tau ** 2 * inter_class_relation(y_s, y_t)
    intra = tau ** 2 * intra_class_relation(y_s, y_t)
    return o["beta"] * inter + o["gamma"] * intra


def compute(o, S, T, label, params, class_weights):
    kind = o["type"]
    if kind == "ce":
        return seg_ce(S["logits"], label, o["ignore_index"], class_weights)
    if kind == "logit":
        return logit_kd(S["logits"], T["logits"], label, o)
    if kind == "feature":
        return fitnets(S, T, params, o)
    if kind == "cwd":
        return cwd(S, T, params, o)
    if kind == "pairwise":
        return pairwise(S, T, o)
    if kind == "ifvd":
        return ifvd(S, T, label, o)
    if kind == "at":
        return at(S, T, o)
    if kind == "dist":
        return dist(S, T, o)
    raise ValueError("unknown type %s" % kind)


def main(directory):
    paths = sorted(glob.glob(os.path.join(directory, "*.json")))
    if not paths:
        print("FAIL no cases found in %s" % directory)
        return 1
    failed = 0
    for path in paths:
        name = os.path.basename(path)[:-5]
        o = json.load(open(path))
        d = torch.load(os.path.join(directory, name + ".pt"))
        S = {k[2:]: v.clone().requires_grad_(True) for k, v in d.items() if k.startswith("s.")}
        T = {k[2:]: v for k, v in d.items() if k.startswith("t.")}
        params = {k[6:]: v for k, v in d.items() if k.startswith("param.")}
        value = compute(o, S, T, d.get("label"), params, d.get("class_weights"))
        keys = sorted(S)
        grads = torch.autograd.grad(value, [S[k] for k in keys])
        ref = float(value)
        got = float(d["value"][0])
        msgs = []
        if not abs(got - ref) <= 1e-5 * abs(ref) + 1e-9:
            msgs.append("value %.9g vs reference %.9g" % (got, ref))
        worst = 0.0
        for k, g in zip(keys, grads):
            scale = float(g.abs().max())
            err = float((d["grad." + k] - g).abs().max())
            worst = max(worst, err / max(scale, 1e-30))
            if not err <= 1e-4 * scale + 1e-12:
                msgs.append("grad %s max error %.3g (scale %.3g)" % (k, err, scale))
        if msgs:
            failed += 1
            print("FAIL %s %s" % (name, "; ".join(msgs)))
        else:
            print("OK %s value=%.9g ref=%.9g rel_err=%.2g grad_rel_err=%.2g"
                  % (name, got, ref, abs(got - ref) / max(abs(ref), 1e-30), worst))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
