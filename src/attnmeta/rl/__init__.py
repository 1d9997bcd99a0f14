"""Meta-reinforcement learning: MAML for policies on 2-D navigation and bandits, and
attention policies that adapt by gradient steps or in context.

Task families (:mod:`~attnmeta.rl.navigation`, :mod:`~attnmeta.rl.bandit`,
:mod:`~attnmeta.rl.gymnasium_tasks`), policies (:mod:`~attnmeta.rl.policies`), rollouts
and advantages, the learner (:mod:`~attnmeta.rl.maml_rl`) and runs
(:mod:`~attnmeta.runs.rl`, used by ``attnmeta train`` for configs with ``kind: rl``).
"""

from attnmeta.rl.advantages import PolicyGradientLoss, advantages, policy_gradient_data
from attnmeta.rl.bandit import BanditTasks
from attnmeta.rl.gymnasium_tasks import GymnasiumTasks
from attnmeta.rl.maml_rl import PolicyGradientMAML, TaskBatch
from attnmeta.rl.navigation import Navigation2D, Navigation2DEnv
from attnmeta.rl.policies import HistoryAttentionPolicy, MLPPolicy
from attnmeta.rl.rollout import Trajectories, sample_trajectories

__all__ = ["PolicyGradientLoss", "advantages", "policy_gradient_data", "BanditTasks",
           "GymnasiumTasks", "PolicyGradientMAML", "TaskBatch", "Navigation2D",
           "Navigation2DEnv", "HistoryAttentionPolicy", "MLPPolicy", "Trajectories",
           "sample_trajectories"]
