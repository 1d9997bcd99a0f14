"""Meta-learners, one file each, over the shared :class:`MetaLearner` interface; each file
registers itself (:func:`register_learner`), and importing them all here is what fills
:data:`LEARNERS` whenever the registry is read."""

from attnmeta.learners.base import EpisodeLearner, MetaLearner, StepOutput, class_count
from attnmeta.learners.pretraining import ClassBatch, SupervisedClassifier
from attnmeta.learners.feat import FEAT
from attnmeta.learners.cross_transformer import CrossTransformer
from attnmeta.learners.pair_matcher import PairMatcher
from attnmeta.learners.frozen import FrozenFeatureLearner
from attnmeta.learners.gradient import GradientLearner
from attnmeta.learners.inner_loop import inner_sgd
from attnmeta.learners.in_context import InContextClassifier, InContextLearner
from attnmeta.learners.maml import MAML
from attnmeta.learners.matching import MatchingNet
from attnmeta.learners.protonet import ProtoNet, prototype_logits, prototypes
from attnmeta.learners.reptile import Reptile
from attnmeta.learners.registry import LEARNERS, Backbone, LearnerEntry, register_learner

__all__ = ["MetaLearner", "EpisodeLearner", "GradientLearner", "StepOutput", "class_count",
           "inner_sgd", "ClassBatch", "SupervisedClassifier", "FrozenFeatureLearner", "FEAT",
           "InContextClassifier", "InContextLearner", "MAML", "MatchingNet", "ProtoNet",
           "CrossTransformer", "PairMatcher", "prototype_logits", "prototypes", "Reptile",
           "LEARNERS", "Backbone", "LearnerEntry", "register_learner"]
