"""LRP hyperparameter search: a tiny grid locally and on a local Ray Tune instance give the same ranking."""

from __future__ import annotations

import pytest

from xai_plugins_workbench.search import grid, objective, search

pytest.importorskip("zennit")


def test_grid_covers_every_combination():
    configs = grid((0.0, 1.0), (True, False))
    assert len(configs) == 2 * 2 ** 3
    assert {"canonize", "gamma_low", "gamma_mid", "gamma_high"} == set(configs[0])
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)


def test_local_search_ranks_by_the_objective(checkpoint_dir):
    configs = grid((0.0, 1.0), (True,))[:2] + grid((0.25,), (False,))
    result = search("resnet", configs, metric="mass_accuracy", images=4, checkpoint_dir=str(checkpoint_dir),
                    progress=False)
    scores = [t.score for t in result.trials]
    assert scores == sorted(scores, reverse=True)
    assert result.best.score == pytest.approx(objective(result.best.config, model_name="resnet",
                                                        metric="mass_accuracy", images=4,
                                                        checkpoint_dir=str(checkpoint_dir)), abs=1e-6)
    assert "| canonize |" in result.markdown()


def test_ray_tune_backend_matches_local(checkpoint_dir, tmp_path):
    """Ray 2.60 no longer has ``local_mode``; the test starts a local single-node Ray, which is what a
    laptop run does (a cluster run only differs in ``ray.init(address=...)``)."""
    pytest.importorskip("ray.tune")
    configs = [{"canonize": True, "gamma_low": 0.0, "gamma_mid": 0.25, "gamma_high": 0.0},
               {"canonize": False, "gamma_low": 0.0, "gamma_mid": 0.25, "gamma_high": 0.0}]
    kwargs = dict(metric="rank_accuracy", images=4, checkpoint_dir=str(checkpoint_dir))
    local = search("resnet", configs, backend="local", progress=False, **kwargs)
    ray = search("resnet", configs, backend="ray", ray_storage=str(tmp_path / "ray"), **kwargs)
    assert [t.config for t in ray.trials] == [t.config for t in local.trials]
    assert [t.score for t in ray.trials] == pytest.approx([t.score for t in local.trials], abs=1e-6)


def test_bad_search_arguments(checkpoint_dir):
    with pytest.raises(ValueError, match="backend must be 'local' or 'ray'"):
        search("resnet", grid((0.0,), (True,)), backend="slurm", checkpoint_dir=str(checkpoint_dir))
    with pytest.raises(ValueError, match="the search grid is empty"):
        search("resnet", [], checkpoint_dir=str(checkpoint_dir))
    with pytest.raises(ValueError, match="unknown objective 'accuracy'"):
        objective(grid((0.0,), (True,))[0], model_name="resnet", metric="accuracy",
                  checkpoint_dir=str(checkpoint_dir))


def test_objective_scores_a_textured_model_on_its_own_dataset():
    """A model trained on TexturedCanvas is searched on TexturedCanvas test images at its 48-pixel size, not on
    the dark digits canvas: the objective equals the metric computed by hand on those images."""
    from xai_plugins.evaluation import metrics as M
    from xai_plugins.evaluation.textured import TexturedCanvas
    from xai_plugins.evaluation.training import load_checkpoint
    from xai_plugins_workbench.lrp import LrpConfig, zennit_lrp

    config = {"canonize": True, "gamma_low": 0.25, "gamma_mid": 0.25, "gamma_high": 0.0}
    score = objective(config, model_name="resnet_textured", metric="mass_accuracy", images=3, seed=1)
    x, y, masks = TexturedCanvas(3, split="test", seed=2001, size=48).tensors()
    lrp = LrpConfig(gammas={"low": 0.25, "mid": 0.25, "high": 0.0}, canonize=True)
    expected = M.relevance_mass_accuracy(zennit_lrp(load_checkpoint("resnet_textured"), x, y, lrp), masks)
    assert score == pytest.approx(float(expected.mean()), abs=1e-6)
