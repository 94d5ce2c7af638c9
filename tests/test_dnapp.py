"""DNA++'s loss, views and the collapse check (issue 16): the parts that need no supernet."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnatool.train.dnapp import (
    Projector,
    SslWeights,
    channel_std,
    cosine_factor,
    ssl_distance,
    ssl_loss,
    ssl_score,
    two_views,
)


def _reference(z, zhat, w):
    """The paper's formula written out term by term with loops (VICReg's normalisation)."""
    m, d = z.shape
    inv = sum(float(((z[j] - zhat[j]) ** 2).sum()) for j in range(m)) / m / d

    def off(x):
        c = x - x.mean(0)
        cov = (c.T @ c) / (m - 1)
        return sum(float(cov[a, b]) ** 2 for a in range(d) for b in range(d) if a != b) / d

    def hinge(x):
        return sum(max(0.0, w.gamma - float((x[:, c].var() + w.eps).sqrt())) for c in range(d)) / d

    var = {"both": hinge(zhat) + hinge(z), "student": hinge(zhat), "teacher": hinge(z)}[w.hinge]
    return w.invariance * inv + w.covariance * (off(z) + off(zhat)) + w.variance * var


@pytest.mark.parametrize("hinge", ["both", "student", "teacher"])
def test_loss_is_the_papers_formula(hinge):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, 6, generator=gen) * 0.5
    zhat = z + 0.3 * torch.randn(16, 6, generator=gen)
    w = SslWeights(hinge=hinge)
    loss, terms = ssl_loss(z.double(), zhat.double(), w)
    assert float(loss) == pytest.approx(_reference(z.double(), zhat.double(), w), rel=1e-9)
    assert set(terms) == {"invariance", "covariance", "variance"}
    assert ssl_distance(zhat, z) == pytest.approx(float(((z - zhat) ** 2).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="hinge"):
        ssl_loss(z, zhat, SslWeights(hinge="none"))


def test_the_loss_rating_does_not_reward_a_shrunk_path_as_the_invariance_term_does():
    """Why DNA++ rates by its full loss: a path whose Z-hat is weakly related to Z scores a
    lower invariance term when it shrinks towards the batch mean (E||Z - c Zhat||^2 falls with c
    while the correlation is weak); the variance hinge makes the shrunk path the worse one."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(100, 8, generator=gen)
    faithful = 0.3 * z + torch.randn(100, 8, generator=gen)
    shrunk = 0.1 * faithful
    assert ssl_score(shrunk, z, "invariance") < ssl_score(faithful, z, "invariance")
    assert ssl_score(shrunk, z, "loss") > ssl_score(faithful, z, "loss")
    assert ssl_score(faithful, z, "loss") == pytest.approx(float(ssl_loss(z, faithful)[0]))
    assert ssl_score(faithful, z, "invariance") == ssl_distance(faithful, z)
    with pytest.raises(ValueError, match="at least 2"):
        ssl_score(faithful[:1], z[:1], "loss")
    with pytest.raises(ValueError, match="loss, invariance"):
        ssl_score(faithful, z, "cosine")


def test_views_are_seeded_different_and_shaped():
    images = torch.rand(8, 3, 32, 32)
    a1, b1 = two_views(images, torch.Generator().manual_seed(3))
    a2, b2 = two_views(images, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert a1.shape == images.shape and not torch.allclose(a1, b1)
    assert cosine_factor(0, 100) == 1.0 and cosine_factor(100, 100) == pytest.approx(0.0)
    assert cosine_factor(0, 100, warmup=10) == pytest.approx(0.1)


def _train(variance: float, steps: int = 100) -> float:
    """A conv teacher and a conv student with their projectors, trained jointly on two views of
    the built-in digits with the DNA++ loss; returns the student's Z-hat channel std."""
    from dnatool.data import load_splits

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    splits = load_splits("digits", 32, 10, 0, augment=False)
    images = torch.stack([splits.train[i][0] for i in range(512)])

    def net():
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1)
        )

    teacher, student, proj_t, proj_s = net(), net(), Projector(24, 64, 32), Projector(24, 64, 32)
    modules = (teacher, student, proj_t, proj_s)
    opt = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=3e-3)
    weights = SslWeights(variance=variance)
    for _ in range(steps):
        a, b = two_views(images[torch.randint(0, len(images), (64,), generator=gen)], gen)
        loss, _ = ssl_loss(proj_t(teacher(a)), proj_s(student(b)), weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return channel_std(proj_s(student(two_views(images[:256], gen)[1])))


def test_without_the_variance_hinge_the_projections_collapse():
    """No EMA network: L_SDR is what keeps the jointly trained pair from a constant output."""
    collapsed, healthy = _train(variance=0.0), _train(variance=25.0)
    assert collapsed < 0.05, collapsed
    assert healthy > 0.5, healthy
