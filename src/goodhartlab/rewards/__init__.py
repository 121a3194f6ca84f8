"""Combining and hardening rewards."""

from goodhartlab.rewards.ensemble import EnsembleReward, ErrorCorrelation, error_correlation

__all__ = ["EnsembleReward", "ErrorCorrelation", "error_correlation"]
