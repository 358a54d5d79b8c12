"""Hardware: the catalog of devices, this machine, calibration."""
