"""Measured (by the analyzer) against published figures, per zoo variant."""

from __future__ import annotations

import torch

from deploylens.zoo.registry import comparable_params, parse_figure, variant
from deploylens.zoo.reparam import reparameterize

PARAMS_TOLERANCE = 0.005  # relative, or half the last printed digit when that is larger
MACS_TOLERANCE = 0.03


def _deviation(measured: int, printed: str | None, tolerance: float) -> tuple[float | None, bool | None]:
    if printed is None:
        return None, None
    value, half_unit = parse_figure(printed)
    return (measured - value) / value, abs(measured - value) <= max(tolerance * value, half_unit)


def compare(name: str) -> dict:
    """Params and MACs of ``name`` from the analyzer beside the published figures.

    Built on meta tensors (no memory, no init time); counted in the form the published
    figure describes (re-parameterized for RepVGG / MobileOne) and under the source's
    counting rule.
    """
    from deploylens.analysis.api import analyze

    v = variant(name)
    with torch.device("meta"):
        model = v.build().eval()
    train = analyze(model, (1, 3, v.resolution, v.resolution))
    profile = analyze(reparameterize(model), (1, 3, v.resolution, v.resolution)) if v.deploy_counts else train
    params = comparable_params(profile, v.published.params_counts)
    params_dev, params_ok = _deviation(params, v.published.params, PARAMS_TOLERANCE)
    macs_dev, macs_ok = _deviation(profile.totals.macs, v.published.macs, MACS_TOLERANCE)
    return {
        "name": name,
        "family": v.family,
        "resolution": v.resolution,
        "form": "deploy" if v.deploy_counts else "as built",
        "params": profile.totals.params,
        "params_counted_as_source": params,
        "macs": profile.totals.macs,
        "train_params": train.totals.params,
        "train_macs": train.totals.macs,
        "published_params": v.published.params,
        "published_params_counts": v.published.params_counts,
        "params_deviation": params_dev,
        "params_ok": params_ok,
        "published_macs": v.published.macs,
        "published_macs_convention": v.published.macs_convention,
        "macs_deviation": macs_dev,
        "macs_ok": macs_ok,
        "published_top1": v.published.top1,
        "source": v.published.source,
        "complete": profile.totals.complete,
    }
