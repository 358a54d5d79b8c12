"""deploylens: how fast will this model run on that device, why, and what should I change?"""

from deploylens import zoo
from deploylens.analysis.api import analyze, capture
from deploylens.analysis.crosscheck import crosscheck
from deploylens.analysis.profile import KernelCost, LayerCost, Profile, Totals
from deploylens.errors import UserError

__version__ = "0.1.0"
__all__ = ["zoo", "analyze", "capture", "crosscheck", "Profile", "LayerCost", "KernelCost", "Totals", "UserError"]
