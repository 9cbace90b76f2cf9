"""Sort-of-CLEVR and the relational benchmark: answers and masks by their definitions, a reduced training run
and evaluation within the CI budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xai_plugins.evaluation import relational as R
from xai_plugins.evaluation.sort_of_clevr import (
    ANSWERS,
    COLOURS,
    QUESTION_DIM,
    QUESTION_TYPES,
    SHAPES,
    SortOfClevr,
    _object_mask,
)


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 10_000), seed=st.integers(0, 3),
       layout=st.sampled_from([{}, {"size": 48, "grid": 3, "object_size": 10}]))
def test_answers_and_masks_follow_the_definitions(index: int, seed: int, layout: dict) -> None:
    data = SortOfClevr(10_001, split="test", seed=seed, **layout)
    rng = np.random.default_rng([seed, 1, index])
    scene = data.scene(rng)
    image, question, label, mask = data.render(index)
    colour = int(question[:6].argmax())
    kind = int(question[8:].argmax()) + 3 * int(question[7] > 0)
    assert question.sum() == 3 and question.shape == (QUESTION_DIM,)
    centres = scene.centres
    name = QUESTION_TYPES[kind]
    involved: set[int]
    if name == "shape":
        expected, involved = SHAPES[scene.shapes[colour]], {colour}
    elif name == "horizontal":
        expected, involved = ("left" if centres[colour, 1] < (data.size - 1) / 2 else "right"), {colour}
    elif name == "vertical":
        expected, involved = ("top" if centres[colour, 0] < (data.size - 1) / 2 else "bottom"), {colour}
    elif name == "count":
        same = {i for i in range(6) if scene.shapes[i] == scene.shapes[colour]}
        expected, involved = str(len(same)), same
    else:
        d = {i: float(np.linalg.norm(centres[i] - centres[colour])) for i in range(6) if i != colour}
        other = (min if name == "closest" else max)(d, key=d.get)
        expected, involved = COLOURS[other][0], {colour, other}
    assert ANSWERS[label] == expected
    colours = np.asarray([rgb for _, rgb in COLOURS], dtype=np.float32)
    on_mask = image[:, mask[0] > 0].T
    covered = {int(np.abs(colours - px).sum(1).argmin()) for px in on_mask}
    assert covered == involved
    assert (np.abs(image - 1.0).sum(0) > 0)[mask[0] > 0].all()


def test_items_are_deterministic_and_restricted_by_question_group() -> None:
    a, b = SortOfClevr(5, seed=2), SortOfClevr(5, seed=2)
    for i in range(5):
        assert all(torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v for u, v in zip(a[i], b[i]))
    assert bool((SortOfClevr(30, relational=True).tensors()[1][:, 7] == 1).all())
    assert bool((SortOfClevr(30, relational=False).tensors()[1][:, 6] == 1).all())
    with pytest.raises(ValueError, match="too small for six objects"):
        SortOfClevr(1, size=12)


@settings(max_examples=20, deadline=None)
@given(index=st.integers(0, 10_000), grid=st.sampled_from([3, 4]))
def test_grid_scenes_put_each_object_wholly_inside_its_own_cell(index: int, grid: int) -> None:
    data = SortOfClevr(10_001, seed=1, size=16 * grid, grid=grid, object_size=10)
    scene = data.scene(np.random.default_rng([1, 0, index]))
    cells = set()
    for i in range(len(COLOURS)):
        rows, cols = np.nonzero(_object_mask(scene, i))
        cell = {(int(r) // 16, int(c) // 16) for r, c in zip(rows, cols)}
        assert len(cell) == 1
        cells |= cell
    assert len(cells) == len(COLOURS)


def test_every_question_of_a_scene_holds_its_item_and_many_questions_is_the_model() -> None:
    data = R.dataset(R.RECIPE, 3, split="train", seed=0)
    image, question, label, _ = data.render(2)
    scene_image, questions, answers = data.every_question(2)
    assert np.array_equal(image, scene_image) and questions.shape == (36, QUESTION_DIM)
    (own,) = np.nonzero((questions == question).all(1))[0]
    assert answers[own] == label
    torch.manual_seed(0)
    model = R.build().eval()
    x = torch.stack([torch.from_numpy(data.every_question(i)[0]) for i in range(3)])
    q = torch.from_numpy(questions)
    image_of, asked = torch.tensor([0, 1, 2, 2, 0]), torch.tensor([0, 7, 35, 3, 20])
    with torch.no_grad():
        torch.testing.assert_close(R.many_questions(model, x, q[asked], image_of), model(x[image_of], q[asked]))


def test_the_relation_network_fits_a_small_set_exactly() -> None:
    """The wiring works end to end: question, image and coordinates reach ``g`` and ``f`` well enough that the
    benchmark architecture memorises 64 scenes (every question type) to 100 % accuracy in eval mode (BatchNorm
    running statistics, as the benchmark uses it). A network that cannot do this has a bug, not a recipe
    problem."""
    torch.manual_seed(0)
    model = R.build()
    x, q, a, _ = SortOfClevr(64, seed=3, size=R.RECIPE.size).tensors()
    assert len(set(a.tolist())) > 6
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(100):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x, q), a).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        assert bool((model(x, q).argmax(1) == a).all())


def test_reduced_training_and_relational_evaluation_run_within_ci() -> None:
    """A few hundred scenes train the Relation Network to better than chance on the non-relational questions
    (one of two answers each) ... and the evaluation yields every method and question group."""
    pytest.importorskip("zennit")
    pytest.importorskip("captum")
    from xai_plugins_workbench.relational import METHODS, evaluate_relational

    torch.manual_seed(0)
    recipe = replace(R.RECIPE, samples=640, epochs=3, test_samples=200)
    model, record = R.train(recipe)
    assert set(record["test_accuracy"]) == {"all", "non_relational", "relational"}
    assert record["test_accuracy"]["all"] > 1 / len(ANSWERS)
    rows = evaluate_relational(model, images=20, batch_size=10, recipe=recipe)
    assert {(r["method"], r["questions"]) for r in rows} == {(m, g) for m in METHODS
                                                             for g in ("non_relational", "relational")}
    for row in rows:
        for key in ("mass_accuracy", "rank_accuracy"):
            mean = row[key]["mean"]
            assert np.isnan(mean) or 0.0 <= mean <= 1.0


def test_loading_without_a_checkpoint_names_the_command(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m xai_plugins.evaluation.relational train"):
        R.load(tmp_path)


def test_the_shipped_checkpoint_answers_both_question_groups() -> None:
    """The shipped Relation Network reads the image: well above the question-type priors on both groups (its
    record: 0.99 non-relational, 0.75 relational on 1,000 test scenes)."""
    model = R.load()
    data = R.dataset(R.recipe_of(), 200, split="test", seed=R.recipe_of().seed + 1)
    result = R.accuracy(model, data)
    assert result["non_relational"] > 0.9 and result["relational"] > 0.6
