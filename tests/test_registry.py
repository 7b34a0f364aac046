"""The registry refuses classes that do not implement their interface, with the reason."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel, Field

from ada_core.errors import PluginError, UnknownComponentError
from ada_core.interfaces import Attributor, ComponentConfig, MaskBuilder
from ada_core.registry import Registry


class GoodConfig(ComponentConfig):
    k: int = Field(3, description="A number.")


class Good(Attributor):
    name = "good"
    Config = GoodConfig

    def _attribute(self, model, images, masks):
        return images.abs()


def make(name="x", config=GoodConfig, base=Attributor, **attrs):
    body = {"name": name, "Config": config, "_attribute": lambda self, m, i, k: i, **attrs}
    return type("C", (base,), body)


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (int, "does not subclass Attributor"),
        (type("Abstract", (Attributor,), {"name": "a", "Config": GoodConfig}), "abstract methods: _attribute"),
        (make(name=""), "non-empty class attribute `name"),
        (make(config=dict), "`Config` must be a pydantic BaseModel"),
        (make(config=type("Loose", (BaseModel,), {"__annotations__": {}})), "extra='forbid' and frozen=True"),
        (
            make(config=type("NoDesc", (ComponentConfig,), {"__annotations__": {"k": int}, "k": 1})),
            "field 'k' has no description",
        ),
        (
            make(config=type("NoDef", (ComponentConfig,), {"__annotations__": {"k": int}, "k": Field(description="d")})),
            "field 'k' has no default",
        ),
    ],
)
def test_rejects_invalid_classes(cls, message):
    with pytest.raises(PluginError, match=message.replace("(", r"\(").replace("`", ".")):
        Registry().attributors.add(cls)


def test_wrong_section():
    with pytest.raises(PluginError, match="registered as mask builder does not subclass MaskBuilder"):
        Registry().masks.add(Good)


def test_build_and_lookup():
    reg = Registry()
    reg.attributors.add(Good)
    assert reg.attributors.build("good", {"k": 5}).config.k == 5
    with pytest.raises(UnknownComponentError) as err:
        reg.attributors.get("godo")
    assert str(err.value) == "unknown attributor 'godo'. Valid choices: 'good'. Did you mean 'good'?"


def test_config_is_frozen_and_strict():
    cfg = Good().config
    with pytest.raises(Exception):
        cfg.k = 4  # type: ignore[misc]
    with pytest.raises(Exception):
        GoodConfig(k=1, other=2)


def test_mask_builder_apply_uses_fill():
    class FillConfig(ComponentConfig):
        fill: float = Field(-1.0, description="Fill.")

    class M(MaskBuilder):
        name = "m"
        Config = FillConfig
        counters: ClassVar = None

        @property
        def fill(self) -> float:  # the builder declares its fill; no config duck typing
            return self.config.fill

        def _build(self, s, g):
            return (s < 0.5).float()

    import torch

    images = torch.arange(4.0).reshape(1, 1, 2, 2)
    keep = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert M().apply(images, keep).tolist() == [[[[0.0, -1.0], [-1.0, 3.0]]]]


def test_mask_builder_refuses_a_non_binary_keep_mask():
    import torch

    from ada_core.errors import ContractError

    class Half(MaskBuilder):
        name = "half"
        Config = ComponentConfig

        def _build(self, s, g):
            return torch.full_like(s, 0.5)

    with pytest.raises(ContractError, match="mask builder 'half' returned a keep mask with values"):
        Half().build(torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
