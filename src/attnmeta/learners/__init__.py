"""Meta-learners, one file each, over the shared :class:`MetaLearner` interface."""

from attnmeta.learners.base import EpisodeLearner, MetaLearner, StepOutput, inner_sgd
from attnmeta.learners.feat import FEAT
from attnmeta.learners.in_context import InContextClassifier, InContextLearner
from attnmeta.learners.maml import MAML
from attnmeta.learners.matching import MatchingNet
from attnmeta.learners.protonet import ProtoNet, prototype_logits, prototypes
from attnmeta.learners.reptile import Reptile

__all__ = ["MetaLearner", "EpisodeLearner", "StepOutput", "inner_sgd", "FEAT", "InContextClassifier", "InContextLearner",
           "MAML", "MatchingNet", "ProtoNet",
           "prototype_logits", "prototypes", "Reptile"]
