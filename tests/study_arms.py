"""The analyzer's costs of a study's arms, for the tests of the studies."""

from __future__ import annotations

from deploylens import analyze


def costs(design) -> dict[str, tuple[int, int]]:
    """FLOPs and fused bytes (float32) of each arm, from the analyzer."""
    result = {}
    for a in design.arms:
        totals = analyze(a.build().eval(), a.input_shape).totals
        result[a.name] = (totals.flops, totals.bytes_fused)
    return result
