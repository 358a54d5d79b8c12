"""Studies: each claim of the field guide as an interleaved experiment on this machine,
the paper's numbers beside the measured ones, and a verdict."""

# each module registers its studies, in the order `study --list` shows them
from deploylens.studies import shufflenet_v2  # noqa: F401, I001
from deploylens.studies import convs, models  # noqa: F401
from deploylens.studies.core import BORNE_OUT, CONTRADICTED, INCONCLUSIVE, StudyResult
from deploylens.studies.runner import STUDIES, run_study

__all__ = ["STUDIES", "run_study", "StudyResult", "BORNE_OUT", "CONTRADICTED", "INCONCLUSIVE"]
