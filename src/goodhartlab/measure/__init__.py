"""The math core: KL accounting, best-of-n, scaling laws, transitions, statistics, synthetic data.

numpy and scipy only: fitting a user's log never needs a deep-learning stack.
"""

from goodhartlab.measure.bestofn import (
    BestOfNCurve,
    PeakDrop,
    bestofn_curve,
    bestofn_ragged,
    bestofn_weights,
    peak_drop,
)
from goodhartlab.measure.curve import Curve
from goodhartlab.measure.kl import (
    discrete_kl,
    empirical_distribution,
    kl_bestofn,
    kl_bestofn_exact,
    sequence_kl,
    to_nats_per_sequence,
    token_kl,
)
from goodhartlab.measure.kl_budget import (
    KLBudget,
    MixtureSolution,
    PessimisticBase,
    Proposition1Example,
    kl_fixed_mixture,
    pessimistic_base,
    proposition_1_example,
)
from goodhartlab.measure.runlog import RunLog, RunLogError, read_run_log
from goodhartlab.measure.scaling import FitError, LawFit, fit_law, law_peak, law_value
from goodhartlab.measure.stats import (
    auroc,
    clopper_pearson_interval,
    prob_at_least_one,
    rate_upper_bound,
    rule_of_three,
    trials_needed,
    trials_to_bound,
    wilson_interval,
)
from goodhartlab.measure.transitions import Onset, Peak, TransitionTest, detect_transition, find_onset, find_peak

__all__ = [
    "BestOfNCurve", "Curve", "FitError", "KLBudget", "LawFit", "MixtureSolution", "Onset", "Peak", "PeakDrop",
    "PessimisticBase", "Proposition1Example", "RunLog", "RunLogError", "TransitionTest", "auroc", "bestofn_curve",
    "bestofn_ragged", "bestofn_weights", "clopper_pearson_interval", "detect_transition", "discrete_kl",
    "empirical_distribution", "find_onset", "find_peak", "fit_law", "kl_bestofn", "kl_bestofn_exact",
    "kl_fixed_mixture", "law_peak", "law_value", "peak_drop", "pessimistic_base", "prob_at_least_one",
    "proposition_1_example", "rate_upper_bound", "read_run_log", "rule_of_three", "sequence_kl",
    "to_nats_per_sequence", "token_kl", "trials_needed", "trials_to_bound", "wilson_interval",
]
