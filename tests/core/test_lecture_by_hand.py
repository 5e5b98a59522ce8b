"""The lecture's formulas computed by hand, step by step, against adaptlr."""

from __future__ import annotations

import math

import pytest
import torch

import adaptlr

G = [[2.0, -0.5], [1.0, 0.25], [-3.0, 1.0]]  # three gradients of a 2-element parameter


def run(opt_cls, grads, **kw):
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([w], **kw)
    out = []
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(w.detach().clone().tolist())
    return out


def test_root_mean_square_first_three_steps():
    lr, eps = 0.1, 1e-8
    got = run(adaptlr.RootMeanSquare, G, lr=lr, eps=eps)
    theta = [0.0, 0.0]
    for t in range(3):  # sigma^t = sqrt(1/(t+1) * sum_{k<=t} g_k^2)
        for i in range(2):
            sigma = math.sqrt(sum(G[k][i] ** 2 for k in range(t + 1)) / (t + 1))
            theta[i] -= lr / (sigma + eps) * G[t][i]
        assert got[t] == pytest.approx(theta, rel=1e-12)


def test_lecture_rmsprop_first_three_steps():
    lr, alpha, eps = 0.1, 0.9, 1e-8
    got = run(adaptlr.RMSprop, G, lr=lr, alpha=alpha, eps=eps, init="first_gradient")
    theta, sigma = [0.0, 0.0], [abs(G[0][0]), abs(G[0][1])]  # sigma^0 = |g^0|
    for t in range(3):
        for i in range(2):
            if t > 0:
                sigma[i] = math.sqrt(alpha * sigma[i] ** 2 + (1 - alpha) * G[t][i] ** 2)
            theta[i] -= lr / (sigma[i] + eps) * G[t][i]
        assert got[t] == pytest.approx(theta, rel=1e-12)


def test_adam_algorithm_1_first_three_steps():
    a, b1, b2, eps = 0.001, 0.9, 0.999, 1e-8  # Kingma & Ba's defaults
    got = run(adaptlr.Adam, G)
    theta, m, v = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
    for t in range(1, 4):
        for i in range(2):
            g = G[t - 1][i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            theta[i] -= a * mhat / (math.sqrt(vhat) + eps)
        assert got[t - 1] == pytest.approx(theta, rel=1e-12)


def test_first_adam_step_is_minus_lr_sign_g():
    got = run(adaptlr.Adam, [[3.0, -1e-3]], lr=0.5)
    assert got[0] == pytest.approx([-0.5, 0.5], rel=1e-4)


def test_rootmeansquare_differs_from_adagrad_sum():
    """The mean does not shrink the step forever as the sum does: step 3 tells them apart."""
    rms = run(adaptlr.RootMeanSquare, [[1.0, 1.0]] * 3, lr=0.1)
    ada = run(adaptlr.Adagrad, [[1.0, 1.0]] * 3, lr=0.1)
    assert rms[2][0] == pytest.approx(-0.3 / (1 + 1e-8), rel=1e-12)  # sigma stays 1 (+eps)
    assert ada[2][0] == pytest.approx(-0.1 * (1 + 1 / math.sqrt(2) + 1 / math.sqrt(3)), rel=1e-9)
