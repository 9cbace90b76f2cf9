"""Sort-of-CLEVR (Santoro et al., NeurIPS 2017), generated offline, with ground-truth masks per question.

Each scene is a white canvas with six objects, one of each colour, each a square or a circle, at random
non-overlapping positions. A question names a colour and asks either about that object alone (non-relational:
its shape, whether it is on the left or right, at the top or bottom) or about its relation to the others
(relational: the colour of the closest and of the furthest object, and how many objects share its shape). As in
CLEVR-XAI (Arras et al., Information Fusion 2022), the ground-truth mask of a question covers the objects it is
about: the named object; for closest/furthest the named object and the answer; for the count every object of
that shape. Item ``i`` depends only on ``(seed, split, i)``; the splits draw from disjoint seeds.

Question encoding (11 numbers, as in the original): one-hot colour (6), one-hot relational flag (2), one-hot
subtype (3). Answers are indices into :data:`ANSWERS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ANSWERS", "COLOURS", "QUESTION_DIM", "QUESTION_TYPES", "Scene", "SortOfClevr", "answer",
           "encode_question"]

COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (1.0, 0.0, 0.0)), ("green", (0.0, 0.8, 0.0)), ("blue", (0.0, 0.0, 1.0)),
    ("orange", (1.0, 0.55, 0.0)), ("gray", (0.5, 0.5, 0.5)), ("yellow", (0.95, 0.9, 0.0)))
SHAPES = ("square", "circle")
QUESTION_TYPES = ("shape", "horizontal", "vertical", "closest", "furthest", "count")
"""The three non-relational, then the three relational question subtypes."""
ANSWERS: tuple[str, ...] = ("square", "circle", "left", "right", "top", "bottom",
                            *(name for name, _ in COLOURS), "1", "2", "3", "4", "5", "6")
QUESTION_DIM = len(COLOURS) + 2 + 3
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Scene:
    """Object centres ``(6, 2)`` as (row, column) pixels, their shapes (indices into :data:`SHAPES`), the
    object size (square side, circle diameter) and the canvas size, all in pixels."""

    centres: np.ndarray
    shapes: np.ndarray
    object_size: int
    size: int


def encode_question(colour: int, kind: int) -> np.ndarray:
    """The 11-number encoding of question ``kind`` (index into :data:`QUESTION_TYPES`) about ``colour``."""
    code = np.zeros(QUESTION_DIM, dtype=np.float32)
    code[colour] = 1.0
    code[len(COLOURS) + int(kind >= 3)] = 1.0
    code[len(COLOURS) + 2 + kind % 3] = 1.0
    return code


def answer(scene: Scene, colour: int, kind: int) -> tuple[int, list[int]]:
    """The answer (index into :data:`ANSWERS`) to question ``kind`` about ``colour``, and the objects it is
    about."""
    centre = scene.centres[colour]
    middle = (scene.size - 1) / 2
    name = QUESTION_TYPES[kind]
    if name == "shape":
        return ANSWERS.index(SHAPES[scene.shapes[colour]]), [colour]
    if name == "horizontal":
        return ANSWERS.index("left" if centre[1] < middle else "right"), [colour]
    if name == "vertical":
        return ANSWERS.index("top" if centre[0] < middle else "bottom"), [colour]
    if name in ("closest", "furthest"):
        distances = np.linalg.norm(scene.centres - centre, axis=1)
        distances[colour] = np.inf if name == "closest" else -np.inf
        other = int(distances.argmin() if name == "closest" else distances.argmax())
        return ANSWERS.index(COLOURS[other][0]), [colour, other]
    same = [i for i in range(len(COLOURS)) if scene.shapes[i] == scene.shapes[colour]]
    return ANSWERS.index(str(len(same))), same


def _object_mask(scene: Scene, index: int) -> np.ndarray:
    """Boolean ``(size, size)`` footprint of object ``index``."""
    rows, cols = np.mgrid[0:scene.size, 0:scene.size]
    r, c = scene.centres[index]
    half = scene.object_size / 2
    if SHAPES[scene.shapes[index]] == "square":
        return (np.abs(rows - r) < half) & (np.abs(cols - c) < half)
    return (rows - r) ** 2 + (cols - c) ** 2 < half ** 2


class SortOfClevr(Dataset):
    """Sort-of-CLEVR scenes with questions; items are ``(image, question, answer, mask)``.

    ``image`` is ``(3, size, size)`` float32 in [0, 1] (white background), ``question`` the ``(11,)`` encoding,
    ``answer`` an index into :data:`ANSWERS`, ``mask`` ``(1, size, size)`` float32, 1 on the objects the question
    is about. ``relational`` restricts the questions to the relational (True) or non-relational (False) ones.
    """

    def __init__(self, length: int = 1000, *, split: str = "train", seed: int = 0, size: int = 64,
                 object_size: int | None = None, relational: bool | None = None, grid: int | None = None) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.object_size = object_size if object_size is not None else max(4, round(size * 0.15))
        if grid is None and size < 4 * self.object_size:
            raise ValueError(f"size={size} is too small for six objects of {self.object_size} pixels; "
                             f"use size >= {4 * self.object_size}")
        if grid is not None and (grid * grid < len(COLOURS) or size % grid or self.object_size > size // grid):
            raise ValueError(f"grid={grid} needs at least {len(COLOURS)} cells that divide size={size} and hold "
                             f"an object of {self.object_size} pixels")
        self.length, self.split, self.seed, self.size, self.relational = length, split, seed, size, relational
        self.grid = grid

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a SortOfClevr of length {self.length}")
        image, question, label, mask = self.render(index % self.length)
        return torch.from_numpy(image), torch.from_numpy(question), label, torch.from_numpy(mask)

    def scene(self, rng: np.random.Generator) -> Scene:
        """Six non-overlapping objects (centres at least 1.5 object sizes apart, inside the canvas); with
        ``grid``, each object lies wholly inside its own cell of a ``grid x grid`` partition of the canvas (the
        cells of the Relation Network's encoder grid when ``size / grid`` is its stride), at a uniformly drawn
        position in that cell."""
        half, gap = self.object_size / 2, 1.5 * self.object_size
        if self.grid is not None:
            cell = self.size // self.grid
            cells = rng.choice(self.grid * self.grid, size=len(COLOURS), replace=False)
            corner = np.stack([cells // self.grid, cells % self.grid], axis=1) * cell
            offset = rng.uniform(half, cell - 1 - half, size=(len(COLOURS), 2))
            return Scene(corner + offset, rng.integers(0, len(SHAPES), size=len(COLOURS)), self.object_size,
                         self.size)
        centres: list[np.ndarray] = []
        while len(centres) < len(COLOURS):
            candidate = rng.uniform(half, self.size - 1 - half, size=2)
            if all(np.linalg.norm(candidate - other) >= gap for other in centres):
                centres.append(candidate)
        return Scene(np.stack(centres), rng.integers(0, len(SHAPES), size=len(COLOURS)), self.object_size,
                     self.size)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Item ``index`` as numpy arrays: image, question encoding, answer index, mask."""
        rng = np.random.default_rng([self.seed, _SPLITS.index(self.split), index])
        scene = self.scene(rng)
        if self.relational is None:
            kind = int(rng.integers(len(QUESTION_TYPES)))
        else:
            kind = int(rng.integers(3)) + (3 if self.relational else 0)
        colour = int(rng.integers(len(COLOURS)))
        label, involved = answer(scene, colour, kind)
        image = np.ones((3, self.size, self.size), dtype=np.float32)
        for i, (_, rgb) in enumerate(COLOURS):
            footprint = _object_mask(scene, i)
            image[:, footprint] = np.asarray(rgb, dtype=np.float32)[:, None]
        mask = np.zeros((1, self.size, self.size), dtype=np.float32)
        for i in involved:
            mask[0, _object_mask(scene, i)] = 1.0
        return image, encode_question(colour, kind), label, mask

    def every_question(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The image of scene ``index`` with every question about it (each colour, each type, in the order
        colour-major): image ``(3, size, size)``, questions ``(36, 11)``, answers ``(36,)``. The scene is item
        ``index``'s; its own question is one of these."""
        rng = np.random.default_rng([self.seed, _SPLITS.index(self.split), index])
        scene = self.scene(rng)
        image = np.ones((3, self.size, self.size), dtype=np.float32)
        for i, (_, rgb) in enumerate(COLOURS):
            image[:, _object_mask(scene, i)] = np.asarray(rgb, dtype=np.float32)[:, None]
        pairs = [(colour, kind) for colour in range(len(COLOURS)) for kind in range(len(QUESTION_TYPES))]
        questions = np.stack([encode_question(c, k) for c, k in pairs])
        answers = np.asarray([answer(scene, c, k)[0] for c, k in pairs], dtype=np.int64)
        return image, questions, answers

    def tensors(self, indices: range | list[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stacked ``(images, questions, answers, masks)`` of the given items (all by default)."""
        items = [self.render(i) for i in (range(self.length) if indices is None else indices)]
        if not items:
            s = self.size
            return (torch.zeros(0, 3, s, s), torch.zeros(0, QUESTION_DIM), torch.zeros(0, dtype=torch.long),
                    torch.zeros(0, 1, s, s))
        return (torch.from_numpy(np.stack([it[0] for it in items])),
                torch.from_numpy(np.stack([it[1] for it in items])),
                torch.tensor([it[2] for it in items], dtype=torch.long),
                torch.from_numpy(np.stack([it[3] for it in items])))
