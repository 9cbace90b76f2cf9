"""The relational benchmark: the reference Relation Network trained on :class:`SortOfClevr`, and LRP on it
scored against the ground-truth masks of each question (the canonization paper's relational claim).

``python -m xai_plugins.evaluation.relational train`` reproduces the shipped checkpoint
(``checkpoints/relation_network.safetensors`` and its ``.json`` record; ``--samples`` and ``--epochs`` run
reduced sizes); ``xai-plugins evaluate --dataset sort-of-clevr`` compares LRP with and without
:class:`~xai_plugins.canonizers.relation_network.RelationNetworkCanonizer` on it.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from xai_plugins.cli_options import add_output_dir
from xai_plugins.evaluation.sort_of_clevr import ANSWERS, QUESTION_DIM, SortOfClevr
from xai_plugins.model_state import explaining

if TYPE_CHECKING:
    from xai_plugins.canonizers.relation_network import RelationNetwork

__all__ = ["RelationalRecipe", "RECIPE", "accuracy", "bound_to_question", "build", "dataset", "load", "many_questions",
           "recipe_of", "train"]

CHECKPOINT = "relation_network"


@dataclass(frozen=True)
class RelationalRecipe:
    """Architecture, scenes and training of the benchmark Relation Network.

    Scenes: ``size`` pixels, objects of ``object_size`` pixels; with ``grid``, each object lies in its own
    cell of the encoder's ``grid x grid`` output (``size / grid`` is the encoder's stride, ``2**conv_layers``),
    so that every Relation Network object is at most one shape. Training: ``samples`` fixed scenes, reused for
    ``epochs`` passes; each step encodes ``batch_size`` scenes once and asks ``questions`` of the 36 questions
    about each (Santoro et al. ask 20 per image); Adam with a linear warm-up to ``lr``, then cosine decay to
    zero; gradient norm clipped at ``clip``.
    """

    size: int = 48
    grid: int | None = 3
    object_size: int | None = 10
    channels: int = 24
    conv_layers: int = 4
    g_width: int = 64
    g_layers: int = 2
    f_width: int = 64
    samples: int = 10000
    epochs: int = 50
    questions: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 200
    clip: float = 1.0
    seed: int = 0
    test_samples: int = 1000


RECIPE = RelationalRecipe()


def build(recipe: RelationalRecipe = RECIPE) -> nn.Module:
    """The untrained Relation Network of ``recipe`` (18 answers, the 11-number question)."""
    from xai_plugins.canonizers.relation_network import RelationNetwork

    return RelationNetwork(num_classes=len(ANSWERS), question_dim=QUESTION_DIM, channels=recipe.channels,
                           conv_layers=recipe.conv_layers, g_width=recipe.g_width, g_layers=recipe.g_layers,
                           f_width=recipe.f_width, dropout=0.0)


def dataset(recipe: RelationalRecipe, length: int, *, split: str, seed: int, **options: Any) -> SortOfClevr:
    """Sort-of-CLEVR scenes as ``recipe`` draws them (size, grid, object size)."""
    return SortOfClevr(length, split=split, seed=seed, size=recipe.size, grid=recipe.grid,
                       object_size=recipe.object_size, **options)


@torch.no_grad()
def accuracy(model: nn.Module, data: SortOfClevr, batch_size: int = 250) -> dict[str, float]:
    """Accuracy on ``data`` overall and on its non-relational and relational questions."""
    hits: list[Tensor] = []
    relational: list[Tensor] = []
    with explaining(model, warn=False, freeze=False):
        for start in range(0, len(data), batch_size):
            x, q, a, _ = data.tensors(range(start, min(start + batch_size, len(data))))
            hits.append(model(x, q).argmax(1) == a)
            relational.append(q[:, 7] > 0)
    hit, rel = torch.cat(hits), torch.cat(relational)
    return {"all": float(hit.float().mean()), "non_relational": float(hit[~rel].float().mean()),
            "relational": float(hit[rel].float().mean())}


def many_questions(model: RelationNetwork, images: Tensor, questions: Tensor, image_of: Tensor) -> Tensor:
    """``model(images[image_of], questions)`` with each image encoded once, and ``g``'s first layer applied
    per object instead of per pair (it is linear in the concatenated pair: ``W [o_i, o_j, q] = W_1 o_i + W_2 o_j
    + W_3 q``); the same function, for training on several questions per scene."""
    objects = model.objects(images)
    first = model.g[0]
    if not isinstance(first, nn.Linear):
        raise TypeError(f"expected a Relation Network whose g starts with a Linear layer, got {first}")
    width = objects.shape[-1]
    left = objects @ first.weight[:, :width].T
    right = objects @ first.weight[:, width:2 * width].T
    asked = questions @ first.weight[:, 2 * width:].T + first.bias
    pairs = left[image_of][:, :, None, :] + right[image_of][:, None, :, :] + asked[:, None, None, :]
    relations = model.g[1:](pairs.flatten(1, 2))
    return model.f(relations.sum(dim=1))


def train(recipe: RelationalRecipe = RECIPE, *, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train from ``recipe.seed`` (see :class:`RelationalRecipe`); returns the model and a record."""
    import time

    import numpy as np

    started = time.perf_counter()
    from xai_plugins.canonizers.relation_network import RelationNetwork

    torch.manual_seed(recipe.seed)
    model = build(recipe)
    assert isinstance(model, RelationNetwork)
    data = dataset(recipe, recipe.samples, split="train", seed=recipe.seed)
    items = [data.every_question(i) for i in range(len(data))]
    images = torch.from_numpy(np.stack([it[0] for it in items]))
    questions = torch.from_numpy(items[0][1])
    answers = torch.from_numpy(np.stack([it[2] for it in items]))
    del items
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    per_epoch = math.ceil(len(data) / recipe.batch_size)
    steps = per_epoch * recipe.epochs
    warmup = max(1, recipe.warmup_steps)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    step = 0
    for _ in range(recipe.epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), recipe.batch_size):
            scenes = order[start:start + recipe.batch_size]
            asked = torch.rand(len(scenes), len(questions), generator=generator).argsort(1)[:, :recipe.questions]
            image_of = torch.arange(len(scenes))[:, None].expand_as(asked).flatten()
            asked = asked.flatten()
            optimiser.zero_grad(set_to_none=True)
            logits = many_questions(model, images[scenes], questions[asked], image_of)
            loss = nn.functional.cross_entropy(logits, answers[scenes][image_of, asked])
            loss.backward()
            if recipe.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
            optimiser.step()
            schedule.step()
            if progress and step % 100 == 0:
                print(f"step {step}/{steps} loss {loss.item():.3f} {time.perf_counter() - started:.0f}s",
                      file=sys.stderr, flush=True)
            step += 1
    model.eval()
    seconds = time.perf_counter() - started
    test = dataset(recipe, recipe.test_samples, split="test", seed=recipe.seed + 1)
    record = {"recipe": asdict(recipe), "test_accuracy": accuracy(model, test), "training_seconds": round(seconds),
              "parameters": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
              "python": platform.python_version()}
    return model, record


def _directory(directory: Path | None) -> Path:
    from xai_plugins.evaluation.training import CHECKPOINT_DIR

    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    if not (directory / f"{CHECKPOINT}.safetensors").is_file():
        raise FileNotFoundError(f"no trained Relation Network in {directory}; train one with 'python -m "
                                "xai_plugins.evaluation.relational train --output-dir DIR' and pass that directory")
    return directory


def recipe_of(directory: Path | None = None) -> RelationalRecipe:
    """The recipe the Relation Network of ``directory`` was trained with (its scene size is the one to
    evaluate it on)."""
    from xai_plugins.evaluation.training import checkpoint_record

    return RelationalRecipe(**checkpoint_record(CHECKPOINT, _directory(directory))["recipe"])


def load(directory: Path | None = None) -> nn.Module:
    """The trained Relation Network of ``directory`` (the package's checkpoint directory by default), in eval
    mode; ``FileNotFoundError`` naming the command that trains it when there is none."""
    from safetensors.torch import load_file

    directory = _directory(directory)
    model = build(recipe_of(directory))
    model.load_state_dict(load_file(str(directory / f"{CHECKPOINT}.safetensors")))
    return model.eval()


class QuestionBound(nn.Module):
    """The Relation Network as a function of the image alone, for a fixed batch of questions (so that
    attribution libraries that call ``model(image)`` explain the image)."""

    def __init__(self, model: nn.Module, questions: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("questions", questions)

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image, self.questions)


def bound_to_question(model: nn.Module, questions: Tensor) -> QuestionBound:
    """``model`` with ``questions`` fixed: ``bound(image) == model(image, questions)``."""
    return QuestionBound(model, questions)


def main(argv: list[str] | None = None) -> int:
    """``train [--samples N] [--epochs N] [--output-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m xai_plugins.evaluation.relational", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the benchmark Relation Network and write its checkpoint")
    p.add_argument("--samples", type=int, default=RECIPE.samples, help=f"training scenes (default {RECIPE.samples})")
    p.add_argument("--epochs", type=int, default=RECIPE.epochs, help=f"passes over them (default {RECIPE.epochs})")
    add_output_dir(p, None, "checkpoint directory (default: the shipped one)", type=Path)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from dataclasses import replace

    from xai_plugins.evaluation.training import save_checkpoint

    model, record = train(replace(RECIPE, samples=args.samples, epochs=args.epochs), progress=True)
    path = save_checkpoint(model, CHECKPOINT, record, args.output_dir)
    print(f"relation network: test accuracy {record['test_accuracy']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
