"""The relational benchmark: the reference Relation Network trained on :class:`SortOfClevr`, and LRP on it
scored against the ground-truth masks of each question (the canonization paper's relational claim).

``python -m xai_plugins.evaluation.relational train`` reproduces the shipped checkpoint
(``checkpoints/relation_network.safetensors`` and its ``.json`` record); ``evaluate`` compares LRP with and
without :class:`~xai_plugins.canonizers.relation_network.RelationNetworkCanonizer`. Both take ``--samples`` to
run reduced (CI) or full sizes.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.cli_options import add_output_dir
from xai_plugins.evaluation.sort_of_clevr import ANSWERS, QUESTION_DIM, SortOfClevr
from xai_plugins.model_state import explaining

__all__ = ["RelationalRecipe", "RECIPE", "accuracy", "bound_to_question", "build", "load", "recipe_of", "train"]

CHECKPOINT = "relation_network"


@dataclass(frozen=True)
class RelationalRecipe:
    """Architecture and training of the benchmark Relation Network (Adam, linear warm-up to a constant rate,
    fresh scenes, each seen once).

    48-pixel scenes give a 3x3 encoder grid (81 pairs), which with a two-layer ``g`` of width 64 keeps a step
    cheap on a CPU. Learning is slow in samples, not broken: the network memorises 64 scenes exactly
    (``tests/evaluation/test_relational.py::test_the_relation_network_fits_a_small_set_exactly``), but on fresh
    scenes it sits at the answer priors for thousands of steps before it binds the question's colour to an
    object, as Relation Networks do on Sort-of-CLEVR (Santoro et al. train for many epochs).
    """

    size: int = 48
    channels: int = 24
    g_width: int = 64
    g_layers: int = 2
    f_width: int = 64
    samples: int = 288000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 200
    seed: int = 0
    test_samples: int = 1000


RECIPE = RelationalRecipe()


def build(recipe: RelationalRecipe = RECIPE) -> nn.Module:
    """The untrained Relation Network of ``recipe`` (18 answers, the 11-number question)."""
    from xai_plugins.canonizers.relation_network import RelationNetwork

    return RelationNetwork(num_classes=len(ANSWERS), question_dim=QUESTION_DIM, channels=recipe.channels,
                           conv_layers=4, g_width=recipe.g_width, g_layers=recipe.g_layers,
                           f_width=recipe.f_width, dropout=0.0)


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


def train(recipe: RelationalRecipe = RECIPE, *, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train from ``recipe.seed`` on freshly drawn scenes (each seen once); returns the model and a record."""
    torch.manual_seed(recipe.seed)
    model = build(recipe)
    data = SortOfClevr(recipe.samples, split="train", seed=recipe.seed, size=recipe.size)
    loader = torch.utils.data.DataLoader(data, batch_size=recipe.batch_size, shuffle=False)
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = math.ceil(len(data) / recipe.batch_size)
    warmup = max(1, recipe.warmup_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / warmup))
    model.train()
    for step, (x, q, a, _) in enumerate(loader):
        optimiser.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x, q), a)
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress and step % 100 == 0:
            print(f"step {step}/{steps} loss {loss.item():.3f}", file=sys.stderr, flush=True)
    model.eval()
    test = SortOfClevr(recipe.test_samples, split="test", seed=recipe.seed + 1, size=recipe.size)
    record = {"recipe": asdict(recipe), "test_accuracy": accuracy(model, test),
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
    """``train [--samples N] [--output-dir DIR]`` or ``evaluate [--samples N]``."""
    parser = argparse.ArgumentParser(prog="python -m xai_plugins.evaluation.relational", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the benchmark Relation Network and write its checkpoint")
    p.add_argument("--samples", type=int, default=RECIPE.samples, help=f"training scenes (default {RECIPE.samples})")
    add_output_dir(p, None, "checkpoint directory (default: the shipped one)", type=Path)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from dataclasses import replace

    from xai_plugins.evaluation.training import save_checkpoint

    model, record = train(replace(RECIPE, samples=args.samples), progress=True)
    path = save_checkpoint(model, CHECKPOINT, record, args.output_dir)
    print(f"relation network: test accuracy {record['test_accuracy']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
