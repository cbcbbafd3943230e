"""dlworkshop.introspect and the plots that show a CNN's insides."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from dlworkshop import introspect, plot  # noqa: E402


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())


def test_count_parameters_all_and_trainable():
    layer = nn.Linear(3, 2)
    assert introspect.count_parameters(layer) == 3 * 2 + 2
    layer.weight.requires_grad_(False)
    assert introspect.count_parameters(layer) == 8
    assert introspect.count_parameters(layer, trainable_only=True) == 2


def test_stage_outputs_records_every_leaf_in_call_order():
    net, x = _net(), torch.randn(2, 1, 6, 6)
    records = introspect.stage_outputs(net, x)
    assert [name for name, _, _ in records] == ["0", "1", "2", "3"]
    conv_out = net[0](x)
    torch.testing.assert_close(records[0][2], conv_out.detach())
    torch.testing.assert_close(records[2][2], torch.max_pool2d(conv_out.relu(), 2).detach())
    assert records[3][2].shape == (2, 4 * 3 * 3)


def test_stage_outputs_filters_kinds_restores_mode_and_removes_hooks():
    net = _net().train()
    records = introspect.stage_outputs(net, torch.randn(1, 1, 6, 6), kinds=(nn.Conv2d,))
    assert [type(m) for _, m, _ in records] == [nn.Conv2d]
    assert net.training, "the model's mode must be restored"
    assert all(not m._forward_hooks for m in net.modules()), "hooks must be removed"


def test_stage_outputs_counts_a_reused_module_each_time():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            return self.pool(self.pool(x))

    records = introspect.stage_outputs(Twice(), torch.randn(1, 1, 8, 8))
    assert [tuple(o.shape) for _, _, o in records] == [(1, 1, 4, 4), (1, 1, 2, 2)]


def test_stage_shapes_lists_input_and_every_layer():
    text = introspect.stage_shapes(_net(), torch.zeros(5, 1, 6, 6))
    lines = text.splitlines()
    assert lines[0].startswith("input") and "(5, 1, 6, 6)" in lines[0]
    assert "0 (Conv2d)" in lines[1] and "(5, 4, 6, 6)" in lines[1]
    assert "2 (MaxPool2d)" in lines[3] and "(5, 4, 3, 3)" in lines[3]
    assert len(lines) == 5


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_plot_filters_one_symmetric_panel_per_filter():
    weight = torch.randn(6, 3, 3, 3)
    fig = plot.plot_filters(weight, ncols=4)
    panels = _image_axes(fig)
    assert len(panels) == 6
    vmin, vmax = panels[0].images[0].get_clim()
    assert vmin == -vmax == -float(weight[:, 0].abs().max())
    plt.close(fig)


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "colorbar"]


def test_plot_feature_maps_numbers_each_channel():
    maps = torch.rand(5, 7, 7) + 0.5
    fig = plot.plot_feature_maps(maps, ncols=3)
    panels = _image_axes(fig)
    assert [ax.get_title() for ax in panels] == ["0", "1", "2", "3", "4"]
    assert len(fig.axes) == 7  # two rows of three, the last one empty, and the colourbar
    # one colour scale for every panel, from the smallest to the largest value, with its bar
    for ax in panels:
        assert ax.images[0].get_clim() == (float(maps.min()), float(maps.max()))
        assert ax.images[0].get_cmap().name == "viridis"
    (bar,) = _colorbars(fig)
    assert bar.get_ylim() == pytest.approx((float(maps.min()), float(maps.max())))
    plt.close(fig)


def test_plot_feature_maps_signed_maps_share_a_symmetric_scale():
    maps = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(0))
    fig = plot.plot_feature_maps(maps, ncols=4)
    limit = float(maps.abs().max())
    for ax in _image_axes(fig):
        assert ax.images[0].get_clim() == (-limit, limit)
        assert ax.images[0].get_cmap().name == "RdBu_r"
    (bar,) = _colorbars(fig)
    assert bar.get_ylim() == pytest.approx((-limit, limit))
    plt.close(fig)


def test_in_mode_puts_the_mode_back_even_when_the_block_raises():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    with pytest.raises(ZeroDivisionError), introspect.in_mode(model, training=False):
        assert not model.training and not model[1].training
        raise ZeroDivisionError
    assert model.training and model[1].training
