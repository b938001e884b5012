"""from_torch on MaxPool2d's dilation and return_indices: a dilation converts to MaxPool2D's
dilation_rate and round-trips through to_torch; return_indices is a ValueError naming the
module and the option; dilation 1 and return_indices=False convert and match torch.

Skipped without torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastcnn.torch")
nn = torch.nn


def _net(pool: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), pool, nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5))


@pytest.mark.parametrize("dilation", [2, (1, 2)])
def test_dilated_max_pool_converts_and_round_trips(dilation: object) -> None:
    net = _net(nn.MaxPool2d(2, dilation=dilation))
    model = ft.from_torch(net, input_shape=(2, 9, 9))
    pool = model.layers[1]
    assert pool.dilation_rate == ((dilation, dilation) if isinstance(dilation, int)
                                  else dilation)
    x = torch.randn(2, 2, 9, 9)
    want = net(x).detach()
    np.testing.assert_allclose(model.predict(x.numpy()), want.numpy(), rtol=1e-5, atol=1e-5)
    back = ft.to_torch(model)
    pools = [m for m in back.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 1 and tuple(pools[0].dilation) == pool.dilation_rate
    torch.testing.assert_close(back(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2, return_indices=True),
                                  nn.AdaptiveMaxPool2d(1, return_indices=True)])
def test_return_indices_is_refused_naming_the_option(pool: nn.Module) -> None:
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), pool)
    with pytest.raises(ValueError, match=r"module \[1\] \(.*MaxPool2d.*\) is not supported: "
                                         r"return_indices=True: .*can't carry the indices"):
        ft.from_torch(net, input_shape=(2, 8, 8))


def test_max_pool_with_dilation_one_converts_and_round_trips() -> None:
    net = _net(nn.MaxPool2d(2, dilation=1, return_indices=False))
    model = ft.from_torch(net, input_shape=(2, 8, 8))
    x = torch.randn(4, 2, 8, 8)
    np.testing.assert_allclose(model.predict(x.numpy()), net(x).detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    back = ft.to_torch(model)
    pools = [m for m in back.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 1 and not pools[0].return_indices and pools[0].dilation in (1, (1, 1))
    torch.testing.assert_close(back(x), net(x), rtol=1e-5, atol=1e-5)
