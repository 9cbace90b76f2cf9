"""The registry: discovery through entry points, provenance, validation and failure isolation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import xai_plugins
from xai_plugins import registry
from xai_plugins.registry import PluginWarning, Registry

from .conftest import OTHER_PLUGINS

BUILTINS = {"canonizers", "bcos", "extremal", "explainfix"}


def _records():
    return {p.name: p for p in xai_plugins.plugins()}


def test_third_party_plugin_is_discovered_with_provenance(install_plugins):
    install_plugins("good")
    comp = xai_plugins.describe("attributor", "test_gxi")
    assert (comp.plugin, comp.distribution, comp.version) == ("testgood", "xai-plugins-testgood", "1.2.3")
    assert comp.summary == "Gradient times input (test plugin)"
    fn = xai_plugins.get("attributor", "test_gxi")
    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    expected = model.weight[1] * x
    torch.testing.assert_close(fn(model, x, 1), expected.detach())
    assert _records()["testgood"].status == "loaded"
    assert _records()["testgood"].components == ["attributor:test_gxi"]


def test_builtins_are_registered_through_entry_points(install_plugins, monkeypatch):
    monkeypatch.delenv("XAI_PLUGINS_BLOCK")
    records = _records()
    assert BUILTINS <= set(records)
    for name in BUILTINS:
        assert records[name].distribution == "xai-plugins"
        assert records[name].value == f"xai_plugins.{name}.plugin"


def test_import_error_is_isolated_and_reported(install_plugins):
    install_plugins("good", "import_error")
    with pytest.warns(PluginWarning, match="plugin 'testimporterror' failed to load and is skipped: "
                                           "ModuleNotFoundError: No module named 'xai_plugins_no_such_dependency'"):
        records = _records()
    assert records["testimporterror"].status == "failed"
    assert "xai_plugins_no_such_dependency" in records["testimporterror"].traceback
    assert records["testgood"].status == "loaded"


def test_warning_is_issued_once_per_process(install_plugins):
    install_plugins("import_error")
    with pytest.warns(PluginWarning):
        xai_plugins.plugins()
    xai_plugins.reset_registry()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        assert _records()["testimporterror"].status == "failed"


def test_hook_error_is_isolated_and_rolled_back(install_plugins):
    install_plugins("good", "hook_error")
    with pytest.warns(PluginWarning, match="testhookerror.*RuntimeError: hook exploded on purpose"):
        records = _records()
    assert records["testhookerror"].status == "failed"
    assert "half_registered" not in {c.name for c in xai_plugins.list_components("attributor")}
    assert records["testgood"].status == "loaded"


def test_misspelled_hook_names_plugin_and_hook(install_plugins):
    install_plugins("good", "misspelled")
    with pytest.warns(PluginWarning):
        records = _records()
    assert records["testmisspelled"].status == "failed"
    assert records["testmisspelled"].error == (
        "HookValidationError: plugin 'testmisspelled' implements unknown hook 'xai_register_canonizer'; known "
        "hooks are: xai_register_canonizers, xai_register_models, xai_register_attributors, "
        "xai_register_initializers, xai_register_commands")
    assert records["testgood"].status == "loaded"


def test_duplicate_name_names_both_plugins(install_plugins):
    install_plugins("good", "duplicate")
    with pytest.warns(PluginWarning):
        records = _records()
    assert records["testzduplicate"].error == (
        "DuplicateComponentError: attributor 'test_gxi' is registered twice: by plugin 'testgood' and by "
        "plugin 'testzduplicate'; rename one of them or block one plugin with XAI_PLUGINS_BLOCK")
    assert xai_plugins.describe("attributor", "test_gxi").plugin == "testgood"


def test_duplicate_raises_when_registered_directly():
    class First:
        @xai_plugins.hookimpl
        def xai_register_models(self, register):
            register("tiny", torch.nn.Identity, summary="identity", paper="none")

    reg = Registry()
    reg.register_plugin(First(), "first")
    with pytest.raises(xai_plugins.DuplicateComponentError, match="by plugin 'first' and by plugin 'second'"):
        reg.register_plugin(First(), "second")


def test_disable_autoload(install_plugins, monkeypatch):
    install_plugins("good")
    monkeypatch.setenv("XAI_PLUGINS_DISABLE_AUTOLOAD", "1")
    assert xai_plugins.plugins() == []
    assert xai_plugins.list_components() == []


def test_block_plugins_by_name(install_plugins, monkeypatch):
    install_plugins("good", "import_error")
    monkeypatch.setenv("XAI_PLUGINS_BLOCK", f"testimporterror, testgood,{OTHER_PLUGINS}")
    records = _records()
    assert records["testgood"].status == "blocked"
    assert records["testimporterror"].status == "blocked"
    assert "test_gxi" not in {c.name for c in xai_plugins.list_components()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name!", "summary": "s", "paper": "p"}, "invalid name 'bad name!'"),
        ({"name": "ok", "summary": "", "paper": "p"}, "without a summary; pass summary='...' to register()"),
        ({"name": "ok", "summary": "s", "paper": " "}, "without a paper; pass paper='...' to register()"),
    ],
)
def test_register_validates_metadata(kwargs, message):
    class Plugin:
        @xai_plugins.hookimpl
        def xai_register_models(self, register):
            register(kwargs["name"], torch.nn.Identity, summary=kwargs["summary"], paper=kwargs["paper"])

    reg = Registry()
    with pytest.raises(xai_plugins.RegistrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        reg.register_plugin(Plugin(), "p")
    assert reg.components() == [] and reg.plugins() == []


def test_unknown_component_lists_what_is_registered():
    reg = Registry()

    class Plugin:
        @xai_plugins.hookimpl
        def xai_register_models(self, register):
            register("tiny", torch.nn.Identity, summary="identity", paper="none")

    reg.register_plugin(Plugin(), "p")
    with pytest.raises(xai_plugins.ComponentNotFoundError, match="no model named 'huge' is registered; "
                                                                 "registered models: tiny"):
        reg.component("model", "huge")
    with pytest.raises(xai_plugins.ComponentNotFoundError, match="unknown component kind 'modle'"):
        reg.component("modle", "tiny")


def test_import_string_components_load_lazily():
    reg = Registry()

    class Plugin:
        @xai_plugins.hookimpl
        def xai_register_models(self, register):
            register("lazy", "torch.nn:Identity", summary="identity", paper="none")

    reg.register_plugin(Plugin(), "p")
    comp = reg.component("model", "lazy")
    assert comp.target == "torch.nn:Identity"
    assert comp.load() is torch.nn.Identity


def test_discovery_is_lazy():
    code = ("import xai_plugins, xai_plugins.registry as r, sys; assert r._registry is None; "
            "assert 'xai_plugins.canonizers.plugin' not in sys.modules; xai_plugins.plugins(); "
            "assert r._registry is not None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_registry_module_does_not_import_hosts():
    code = ("import sys, xai_plugins; xai_plugins.list_components(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('captum', 'zennit', 'torchvision')))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reset_registry_forgets_components(install_plugins):
    install_plugins("good")
    assert xai_plugins.describe("attributor", "test_gxi")
    registry.reset_registry()
    assert registry._registry is None
