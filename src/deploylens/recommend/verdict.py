"""Whether the field guide's advice for a platform holds on ``recommend``'s numbers: the
family the guide favours there against the one it advises against, *at comparable
accuracy*, on the latency ``recommend`` ranked by (predicted on the target, or measured).

Each ranked model of the favoured families is paired with the model of the disfavoured
families nearest to it in published top-1, when one lies within ``TOLERANCE_TOP1``
points (a tie: the faster one). A pair's speedup is the other model's latency over the
favoured one's (above 1: the favoured model is faster at that accuracy); the verdict is
on the geometric mean of the pairs' speedups:

* *borne out*: above ``1 + MARGIN``;
* *not borne out*: below ``1 / (1 + MARGIN)``;
* *inconclusive*: within the margin, or no pair (a ranking without both kinds of model at
  comparable accuracy).

The verdict follows whatever latency the ranking holds, so it can fail: on a device
model where depthwise conv is fast, dense 3x3 networks lose at equal top-1."""

from __future__ import annotations

import math

BORNE_OUT, NOT_BORNE_OUT, INCONCLUSIVE = "borne out", "not borne out", "inconclusive"
TOLERANCE_TOP1 = 1.0  # top-1 points within which two models count as comparably accurate
MARGIN = 0.10  # the geometric-mean speedup must clear 1 by this fraction either way

DEPTHWISE = ("depthwise-separable nets",
             ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "shufflenet_v2", "mobileone", "efficientnet",
              "ghostnet"))
DENSE = ("plain dense 3x3 nets", ("repvgg", "vgg"))

# platform class -> (the platform as the guide names it, (style, families) it favours,
# (style, families) it advises against)
GUIDE_ADVICE = {
    "cpu": ("mobile CPU", ("depthwise-separable nets", ("mobilenet_v1", "shufflenet_v2")), DENSE),
    "npu": ("NPU", ("dense nets", ("cspnet", "repvgg")), DEPTHWISE),
    "gpu": ("NVIDIA GPU", ("plain dense 3x3 nets", ("repvgg",)), DEPTHWISE),
}


def _of(candidates: list[dict], families: tuple[str, ...]) -> list[dict]:
    return [c for c in candidates if c["family"] in families and c["latency_ms"] and c["top1"] is not None]


def pairs(favoured: list[dict], others: list[dict], tolerance: float = TOLERANCE_TOP1) -> list[dict]:
    """Each ``favoured`` candidate with the ``others`` one nearest in top-1 within
    ``tolerance`` points (a tie: the faster, then the first by name), and the speedup."""
    found = []
    for mine in sorted(favoured, key=lambda c: (c["top1"], c["model"])):
        near = [c for c in others if abs(c["top1"] - mine["top1"]) <= tolerance + 1e-9]
        if not near:
            continue
        other = min(near, key=lambda c: (abs(c["top1"] - mine["top1"]), c["latency_ms"], c["model"]))
        found.append({"favoured": mine["model"], "favoured_top1": mine["top1"], "favoured_ms": mine["latency_ms"],
                      "other": other["model"], "other_top1": other["top1"], "other_ms": other["latency_ms"],
                      "speedup": other["latency_ms"] / mine["latency_ms"]})
    return found


def judge(device_class: str, target_name: str, candidates: list[dict]) -> dict:
    """The guide's advice for ``device_class`` judged on ``candidates`` (``recommend``'s
    rows: model, family, latency_ms, top1): the families compared, the pairs, their
    geometric-mean speedup, the verdict and a sentence saying it."""
    platform, (style, families), (other_style, other_families) = GUIDE_ADVICE[device_class]
    found = pairs(_of(candidates, families), _of(candidates, other_families))
    speedup = math.exp(sum(math.log(p["speedup"]) for p in found) / len(found)) if found else None
    if speedup is None:
        verdict = INCONCLUSIVE
        missing = [(kind, group) for kind, group in ((style, families), (other_style, other_families))
                   if not _of(candidates, group)]
        named = [f"{kind} ({' / '.join(group)})" for kind, group in missing]
        why = (f"no {' and no '.join(named)} in this ranking" if missing else
               f"no two models of the two kinds within {TOLERANCE_TOP1:g} top-1 point of each other")
    else:
        verdict = BORNE_OUT if speedup > 1 + MARGIN else NOT_BORNE_OUT if speedup < 1 / (1 + MARGIN) else INCONCLUSIVE
        how = f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"
        why = (f"at comparable top-1 (within {TOLERANCE_TOP1:g} point) {' / '.join(families)} ran {how} than "
               f"{other_style} (geometric mean of {len(found)} pair{'s' if len(found) > 1 else ''}; "
               f"margin {MARGIN:.0%})")
    sentence = (f"the guide's advice for {platform} ({' / '.join(families)} over {other_style}) is {verdict} "
                f"on {target_name}: {why}")
    return {"verdict": verdict, "platform": platform,
            "favoured": {"style": style, "families": list(families)},
            "disfavoured": {"style": other_style, "families": list(other_families)},
            "tolerance_top1": TOLERANCE_TOP1, "margin": MARGIN, "pairs": found, "speedup": speedup,
            "reason": sentence}
