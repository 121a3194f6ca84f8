"""Classic RL with a visible proxy and a hidden true reward: environments, agents, capability sweeps.

Importing this package registers every environment with Gymnasium as `goodhartlab/<Name>-v0`.
"""

from goodhartlab.rl.batched import BatchedCore, BatchedVectorEnv, SingleEnv, StepBatch, make_batched
from goodhartlab.rl.contract import MISSPECIFICATIONS, ContractError, check_contract, dual_reward_info
from goodhartlab.rl.registry import list_environments, register_all

register_all()

__all__ = [
    "MISSPECIFICATIONS",
    "BatchedCore",
    "BatchedVectorEnv",
    "ContractError",
    "SingleEnv",
    "StepBatch",
    "check_contract",
    "dual_reward_info",
    "list_environments",
    "make_batched",
    "register_all",
]
