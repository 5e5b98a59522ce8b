"""Optimizer specs: parsing, errors that list what is allowed, real adaptlr classes."""

from __future__ import annotations

import pytest
import torch

import adaptlr
from adaptlr.lab import OPTIMIZERS, parse_optimizer


def test_parse_values() -> None:
    s = parse_optimizer("adam:lr=0.1,betas=0.9/0.99,amsgrad=true")
    assert s.kwargs == {"lr": 0.1, "betas": (0.9, 0.99), "amsgrad": True}
    assert s.label == "adam(lr=0.1,betas=0.9/0.99,amsgrad=True)"
    opt = s.build([torch.zeros(2, requires_grad=True)])
    assert type(opt) is adaptlr.Adam
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_name_builds_an_adaptlr_optimizer(name: str) -> None:
    opt = parse_optimizer(name).build([torch.zeros(2, requires_grad=True)])
    assert isinstance(opt, adaptlr.Optimizer)


def test_lecture_variants() -> None:
    assert (
        type(parse_optimizer("rms").build([torch.zeros(1, requires_grad=True)]))
        is adaptlr.RootMeanSquare
    )
    opt = parse_optimizer("rmsprop_lecture").build([torch.zeros(1, requires_grad=True)])
    assert opt.param_groups[0]["init"] == "first_gradient"
    assert (
        parse_optimizer("momentum")
        .build([torch.zeros(1, requires_grad=True)])
        .param_groups[0]["momentum"]
        == 0.9
    )


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("adamx", "unknown optimizer 'adamx'; allowed: sgd, momentum"),
        ("adam:foo=1", "adam: unknown key 'foo'; allowed: lr, betas, eps"),
        ("adam:lr", "adam: bad item 'lr'"),
        ("adam:lr=", "adam: bad item"),
        ("adam:betas=0.9/x", "bad value"),
        ("adam:lr=-1", "lr"),
        ("", "empty optimizer spec"),
    ],
)
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        parse_optimizer(spec)
    assert "\n" not in str(err.value)
