"""ada-captum's guards: guided methods need real ReLUs, hooks go through handles, clear errors,
models checked before training, the random control's seeding, and the plugin's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from plugins.captum_reference import METHODS as GRADIENT_METHODS
from torch import Tensor, nn

import ada_core
from ada_core import Attributor
from ada_core.errors import ConfigError, ContractError, InputError
from ada_core.testing.models import TinySegModel

ALL_METHODS = [*GRADIENT_METHODS, "random"]
GUIDED = ["guided_backprop", "guided_gradcam", "deconvnet"]
PLUGIN_SOURCE = Path(__file__).resolve().parents[2] / "plugins" / "ada-captum" / "ada_captum"


def hooks_on(model: nn.Module) -> int:
    return sum(
        len(getattr(m, d))
        for m in model.modules()
        for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    )


# -- guided methods must be guided --------------------------------------------------------
class NoReluNet(TinySegModel):
    name = "no-relu"

    def __init__(self) -> None:
        super().__init__()
        for seq in (self.encoder, self.bottleneck, self.decoder):
            for i, m in enumerate(seq):
                if isinstance(m, nn.ReLU):
                    seq[i] = nn.GELU()


class FunctionalReluNet(TinySegModel):
    name = "functional-relu"

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.ReLU()  # present but never called
        for seq in (self.encoder, self.bottleneck, self.decoder):
            for i, m in enumerate(seq):
                if isinstance(m, nn.ReLU):
                    seq[i] = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        skip = F.relu(self.encoder(x))
        deep = self.up(F.relu(self.bottleneck(self.pool(skip))))
        return self.head(F.relu(self.decoder(torch.cat([skip, deep], dim=1))))


@pytest.mark.parametrize("name", GUIDED)
@pytest.mark.parametrize("grouped", [False, True])
def test_guided_methods_refuse_models_without_relu_modules(reg, batch, name, grouped):
    a = reg.attributors.build(name)
    others = [reg.attributors.build("vanilla"), reg.attributors.build("gradcam")]

    def call(m):
        if grouped:
            return Attributor.attribute_group([others[0], a, others[1]], m, *batch)
        return a.attribute(m, *batch)

    with pytest.raises(
        ContractError, match=rf"'{name}'.*'no-relu' has no nn.ReLU modules.*silently equal vanilla"
    ):
        call(NoReluNet())
    model = FunctionalReluNet()
    with pytest.raises(ContractError, match="none of them ran in forward"):
        call(model)
    assert hooks_on(model) == 0


@pytest.mark.parametrize("name", GUIDED)
def test_check_model_refuses_guided_methods_without_relu_modules(reg, name):
    a = reg.attributors.build(name)
    with pytest.raises(
        ConfigError, match=rf"attributor '{name}': model 'no-relu' has no nn.ReLU modules"
    ):
        a.check_model(NoReluNet())
    a.check_model(TinySegModel())
    reg.attributors.build("vanilla").check_model(NoReluNet())  # plain gradients need no ReLU


def test_check_model_names_the_layer_key_and_suggests(reg, model):
    for name in ("gradcam", "guided_gradcam"):
        bad = reg.attributors.build(name, {"layer": "decodr"})
        with pytest.raises(
            ConfigError,
            match=rf"attributor '{name}': layer 'decodr' is not an attribution layer of model "
            r"'tiny' \(params.layer\). Valid choices: 'bottleneck', 'decoder', 'head'. "
            r"Did you mean 'decoder'\?",
        ):
            bad.check_model(model)
        reg.attributors.build(name, {"layer": "head"}).check_model(model)

    class NoDefault(TinySegModel):
        name = "no-default"
        default_attribution_layer = "middle"

    with pytest.raises(ConfigError, match=r"default_attribution_layer 'middle'.*params.layer"):
        reg.attributors.build("gradcam").check_model(NoDefault())
    for name in ("vanilla", "input_x_gradient", "random"):
        reg.attributors.build(name).check_model(NoDefault())  # no layer, nothing to check


# -- hooks, in-place ReLUs, errors --------------------------------------------------------
class Explodes(TinySegModel):
    name = "explodes"

    def forward(self, x: Tensor) -> Tensor:
        self.encoder(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_hooks_removed_and_inplace_restored_even_on_error(reg, batch, name):
    model = Explodes()
    model.encoder[2].inplace = True
    own = model.encoder.register_forward_hook(lambda m, i, o: None)  # the user's hook stays
    a = reg.attributors.build(name)
    group = [reg.attributors.build(n) for n in GRADIENT_METHODS if n != name]
    for call in (
        lambda: a.attribute(model, *batch),
        lambda: Attributor.attribute_group([*group, a], model, *batch),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            call()
        assert hooks_on(model) == 1 and len(model.encoder._forward_hooks) == 1
        assert model.encoder[2].inplace and model.training
    own.remove()


def test_plugin_removes_hooks_through_handles_only():
    """STYLE.md: hooks are removed through their handles, never by editing torch's dicts."""
    for path in sorted(PLUGIN_SOURCE.glob("*.py")):
        source = path.read_text()
        for private in ("_forward_hooks", "_backward_hooks", "_forward_pre_hooks"):
            assert private not in source, f"{path.name} touches torch's private {private}"


def test_inplace_relus_work_and_give_the_same_saliency(reg, model, batch):
    ref = {n: reg.attributors.build(n).attribute(model, *batch) for n in GRADIENT_METHODS}
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    for name in GRADIENT_METHODS:
        torch.testing.assert_close(reg.attributors.build(name).attribute(model, *batch), ref[name])
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_gradcam_layer_errors(reg, model, batch):
    with pytest.raises(
        ConfigError,
        match=r"'gradcam': layer 'decodr'.*'bottleneck', 'decoder', 'head'.*Did you mean 'decoder'",
    ):
        reg.attributors.build("gradcam", {"layer": "decodr"}).attribute(model, *batch)

    class NoDefault(TinySegModel):
        name = "no-default"
        default_attribution_layer = "middle"

    with pytest.raises(
        ContractError,
        match=r"'no-default' declares default_attribution_layer 'middle'.*'layer' parameter",
    ):
        reg.attributors.build("guided_gradcam").attribute(NoDefault(), *batch)

    class Detached(TinySegModel):
        name = "detached"

        def attribution_layers(self):
            return {"bottleneck": nn.Conv2d(8, 8, 1)}  # not part of the network

    class Flat(TinySegModel):
        name = "flat"

        def __init__(self) -> None:
            super().__init__()
            self.flat = nn.Flatten(2)

        def forward(self, x: Tensor) -> Tensor:
            out = super().forward(x)
            return self.flat(out).view_as(out)

        def attribution_layers(self):
            return {"bottleneck": self.flat}

    for grouped in (False, True):
        for net, name, message in (
            (Detached(), "gradcam", "layer 'bottleneck' did not run during forward"),
            (Flat(), "guided_gradcam", r"must output a \(B, C, h, w\) tensor, got \(3, 1, 256\)"),
        ):
            a = reg.attributors.build(name)
            members = [reg.attributors.build("vanilla"), a] if grouped else [a]
            with pytest.raises(ContractError, match=message):
                Attributor.attribute_group(members, net, *batch)
            assert hooks_on(net) == 0
    conv = nn.Conv2d(1, 1, 1)  # not a SegModel
    with pytest.raises(InputError, match=r"'gradcam': model .* has no attribution_layers\(\)"):
        reg.attributors.build("gradcam").attribute(conv, *batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL_METHODS)
def test_bad_inputs_name_the_attributor(reg, model, batch, name):
    images, masks = batch
    a = reg.attributors.build(name)
    with pytest.raises(
        InputError,
        match=rf"attributor '{name}': images must have shape \(B, 1, H, W\), got \(3, 2, 16, 16\)",
    ):
        a.attribute(model, images.repeat(1, 2, 1, 1), masks)
    with pytest.raises(
        InputError, match=rf"attributor '{name}': images must be floating point, got torch.int64"
    ):
        a.attribute(model, images.long(), masks)
    bad = images.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(InputError, match=rf"attributor '{name}': images contains NaN"):
        Attributor.attribute_group([a], model, bad, masks)
    with pytest.raises(InputError, match=rf"attributors '{name}', 'vanilla': images contains NaN"):
        Attributor.attribute_group([a, reg.attributors.build("vanilla")], model, bad, masks)


def test_config_errors(reg):
    with pytest.raises(
        ConfigError, match=r"params.target: Input should be 'foreground', 'ground_truth' or 'all'"
    ):
        reg.attributors.build("vanilla", {"target": "gm"})
    with pytest.raises(ConfigError, match=r"params.threshold"):
        reg.attributors.build("gradcam", {"threshold": 1.5})
    with pytest.raises(ConfigError, match=r"params.layer.*unknown parameter"):
        reg.attributors.build("vanilla", {"layer": "bottleneck"})


# -- random control and precision ---------------------------------------------------------
def test_random_is_uniform_seeded_and_replayable(reg, model, batch):
    a, b, c = (reg.attributors.build("random", {"seed": s}) for s in (7, 7, 8))
    first, second = a.attribute(model, *batch), a.attribute(model, *batch)
    assert torch.equal(first, b.attribute(model, *batch)) and torch.equal(
        second, b.attribute(model, *batch)
    )
    assert not torch.equal(first, second) and not torch.equal(first, c.attribute(model, *batch))
    assert first.min() >= 0 and first.max() < 1 and abs(float(first.mean()) - 0.5) < 0.05
    # the documented stream: call k draws torch.rand from a CPU generator seeded seed*1000003+k
    by_hand = torch.rand(batch[0].shape, generator=torch.Generator().manual_seed(7 * 1_000_003 + 1))
    assert torch.equal(second, by_hand)
    replay = reg.attributors.build("random", {"seed": 7})
    replay.load_state_dict(a.state_dict() | {"calls": 1})
    assert torch.equal(replay.attribute(model, *batch), second)


def test_random_derives_its_stream_from_set_seed_unless_fixed(reg, model, batch):
    assert reg.attributors.get("random").control is True
    assert not any(reg.attributors.get(n).control for n in GRADIENT_METHODS)
    assert reg.attributors.build("random").config.seed is None
    a, b, c = (reg.attributors.build("random") for _ in range(3))
    a.set_seed(11)
    b.set_seed(11)
    c.set_seed(12)
    out = a.attribute(model, *batch)
    assert torch.equal(out, b.attribute(model, *batch))
    assert not torch.equal(out, c.attribute(model, *batch))
    fixed = reg.attributors.build("random", {"seed": 11})
    fixed.set_seed(999)  # an explicit seed wins over the run's
    assert torch.equal(fixed.attribute(model, *batch), out)
    huge = reg.attributors.build("random")
    huge.set_seed(2**64 + 5)  # e.g. a hash: any int must be usable
    assert huge.attribute(model, *batch).shape == batch[0].shape


def test_amp_is_ignored_on_cpu(reg, model, batch):
    for name in ("vanilla", "gradcam"):
        exact = reg.attributors.build(name).attribute(model, *batch)
        torch.testing.assert_close(
            reg.attributors.build(name, {"amp": True}).attribute(model, *batch),
            exact,
            rtol=0,
            atol=0,
        )


# -- the plugin's imports -----------------------------------------------------------------
def test_plugin_imports_only_the_public_ada_core_surface_and_no_captum():
    exported = set(ada_core._EXPORTS)
    for path in sorted(PLUGIN_SOURCE.glob("*.py")):
        if path.name == "plugin.py":
            continue  # the registrar module; its imports belong to the plugin-loading change
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
                if node.module == "ada_core":
                    names = {alias.name for alias in node.names}
                    assert names <= exported, f"{path.name}: {names - exported} not exported"
            else:
                continue
            for module in modules:
                assert module.split(".")[0] != "captum", f"{path.name} imports {module}"
                assert module == "ada_core" or not module.startswith("ada_core."), (
                    f"{path.name} imports {module}; use the names ada_core exports"
                )
