"""Rewards: the scorer contract, and combining and hardening rewards (ensembles, Bradley–Terry heads)."""

from goodhartlab.rewards.bradley_terry import BradleyTerryHead, comparison_pairs, fit_bradley_terry, fit_logistic
from goodhartlab.rewards.ensemble import EnsembleReward, ErrorCorrelation, error_correlation
from goodhartlab.rewards.scorer import ScoreError, Scorer, check_pairs, checked_scores

__all__ = ["BradleyTerryHead", "EnsembleReward", "ErrorCorrelation", "ScoreError", "Scorer", "check_pairs",
           "checked_scores", "comparison_pairs", "error_correlation", "fit_bradley_terry", "fit_logistic"]
