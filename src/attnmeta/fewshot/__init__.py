"""Few-shot on a person's own examples: a trained run fitted to a support set, its
predictions, explanations, saved folder and ONNX export (:class:`FewShotClassifier`)."""

from attnmeta.fewshot.classifier import Explanation, FewShotClassifier, FittedModule
from attnmeta.fewshot.inputs import InputError, ModelError, Preprocessing

__all__ = ["FewShotClassifier", "Explanation", "FittedModule", "InputError", "ModelError",
           "Preprocessing"]
