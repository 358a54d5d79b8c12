"""This machine's calibration: cases built from the zoo's blocks, synthetic networks, the
runner and its time budget, and the fits that make a
:class:`~deploylens.hardware.calibration_profile.CalibrationProfile`."""

from deploylens.calibration.fit import combine
from deploylens.calibration.run import calibrate
from deploylens.hardware.calibration_profile import CalibrationProfile, known_probe_level, load, profile_path, save

__all__ = ["calibrate", "combine", "CalibrationProfile", "known_probe_level", "load", "profile_path", "save"]
