"""Latency prediction: a Profile, its kernels and a device model in, a Prediction out."""

from deploylens.predict.api import predict, resolve_target
from deploylens.predict.core import KernelTime, Prediction, kernels_to_run, predict_profile

__all__ = ["predict", "resolve_target", "predict_profile", "kernels_to_run", "Prediction", "KernelTime"]
