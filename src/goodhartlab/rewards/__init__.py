"""Rewards: the scorer contract, and combining and hardening rewards (ensembles, transforms, Bradley–Terry heads)."""

from goodhartlab.rewards.bradley_terry import BradleyTerryHead, comparison_pairs, fit_bradley_terry, fit_logistic
from goodhartlab.rewards.ensemble import EnsembleReward, ErrorCorrelation, error_correlation
from goodhartlab.rewards.scorer import ScoreError, Scorer, check_pairs, checked_scores
from goodhartlab.rewards.transforms import (
    Capped,
    Centred,
    Constrained,
    LengthPenalty,
    PreferenceAsReward,
    ReferenceRewards,
    Weighted,
    WordLimit,
    word_count,
)

__all__ = ["BradleyTerryHead", "Capped", "Centred", "Constrained", "EnsembleReward", "ErrorCorrelation",
           "LengthPenalty", "PreferenceAsReward", "ReferenceRewards", "ScoreError", "Scorer", "Weighted", "WordLimit",
           "check_pairs", "checked_scores", "comparison_pairs", "error_correlation", "fit_bradley_terry",
           "fit_logistic", "word_count"]
