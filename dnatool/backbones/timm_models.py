"""Searched networks as timm models: `timm.create_model(NAME, pretrained=True, features_only=True)`.

`register(name, arch)` adds a timm entrypoint for one arch; the generic entry `dnatool_model` takes
its arch from a dnatool `model.pt` (`pretrained_cfg_overlay=dict(file=...)`) or from `arch=`.
Both go through timm's `build_model_with_cfg` with its own `EfficientNet` / `EfficientNetFeatures`
(timm's `_create_effnet` pattern), so `feature_info`, `pretrained_cfg` and `features_only` behave
as for `efficientnet_b0`. Weights load with `weights_only=True` (timm's `load_state_dict`);
`checkpoint_filter_fn` unwraps dnatool checkpoints and refuses weights of another arch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from dnatool.arch.resolve import resolve_arch
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput
from dnatool.nn.model_run import DEFAULT_PREPROCESS, MODEL_FILE
from dnatool.nn.timm_adapter import efficientnet_kwargs, model_classes

GENERIC = "dnatool_model"
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
_FEATURE_ONLY_FILTER = ("num_classes", "num_features", "head_conv", "global_pool")
_REGISTERED: dict[str, ArchSpec] = {}
default_cfgs: dict[str, dict[str, Any]] = {}  # read by timm's register_model


def model_kwargs(arch: ArchSpec) -> dict[str, Any]:
    """Constructor arguments of timm's EfficientNet(Features) for `arch` (widths kept as given)."""
    kwargs = efficientnet_kwargs(arch)
    kwargs.pop("in_chans")
    return kwargs


def pretrained_cfg(arch: ArchSpec, preprocess: dict[str, Any] | None = None) -> dict[str, Any]:
    """timm pretrained_cfg of an arch: input size and normalisation of its training run."""
    pre = {**DEFAULT_PREPROCESS, "resolution": arch.resolution, **(preprocess or {})}
    size = int(pre["resolution"])
    return dict(
        num_classes=arch.num_classes,
        input_size=(arch.in_chans, size, size),
        pool_size=(max(1, size // 32),) * 2,
        mean=tuple(pre["mean"]),
        std=tuple(pre["std"]),
        crop_pct=pre["crop_pct"],
        interpolation=pre["interpolation"],
        first_conv="conv_stem",
        classifier="classifier",
        license="see the model run",
    )


def create(variant: str, arch: ArchSpec, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build `arch` through timm's `build_model_with_cfg` (what `_create_effnet` does for B0)."""
    from timm.models import build_model_with_cfg
    from timm.models._builder import pretrained_cfg_for_features

    features = bool(kwargs.pop("features_only", False))
    if features and "out_indices" in kwargs:  # timm would end in an IndexError from inside
        from dnatool.backbones.levels import check_out_indices, feature_levels

        kwargs["out_indices"] = check_out_indices(feature_levels(arch), kwargs["out_indices"])
    if kwargs.get("pretrained_cfg") is None:
        kwargs["pretrained_cfg"] = pretrained_cfg(arch)
    kwargs.setdefault("num_features", arch.head)
    for key, value in model_kwargs(arch).items():
        kwargs.setdefault(key, value)
    classifier, feature_model = model_classes(arch)
    model = build_model_with_cfg(
        feature_model if features else classifier,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        kwargs_filter=_FEATURE_ONLY_FILTER if features else None,
        **kwargs,
    )
    if features:
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(model.pretrained_cfg)
    return model


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Unwrap a dnatool checkpoint, drop the head for feature models, refuse another arch's weights."""
    if isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    target = model.state_dict()
    if not hasattr(model, "classifier"):
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIXES)}
    missing = [k for k in target if k not in state_dict and not k.startswith("classifier.")]
    wrong = [
        k for k, v in state_dict.items() if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if missing or wrong:
        key = (missing or wrong)[0]
        what = "lacks" if missing else "has another shape for"
        raise BadInput(
            f"pretrained weights do not fit this arch: the checkpoint {what} {key!r} "
            f"({len(missing)} missing, {len(wrong)} of another shape)"
        )
    return state_dict


def register(name: str, arch: Any) -> str:
    """Register `arch` (any ARCH form) as timm model `name`; re-registering the same arch is a no-op."""
    from timm.models._registry import is_model, register_model

    if not name.isidentifier():
        raise BadInput(f"timm model name must be a Python identifier, got {name!r}")
    spec = resolve_arch(plain_arch(arch))
    if _REGISTERED.get(name) == spec:
        return name
    if is_model(name) and name not in _REGISTERED:
        raise BadInput(f"{name!r} is already a timm model; pick another name")

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create(name, spec, pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = (
        f"dnatool arch {spec.name!r} ({len(spec.stages)} stages), registered by dnatool."
    )
    default_cfgs[name] = pretrained_cfg(spec)
    _REGISTERED[name] = spec
    register_model(entry)
    return name


def dnatool_model(pretrained: bool = False, arch: Any = None, **kwargs: Any) -> nn.Module:
    """Generic entry: the arch is `arch=` or read from the dnatool checkpoint given as `file`."""
    file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    preprocess = None
    if arch is None:
        if file is None:
            raise BadInput(
                f"{GENERIC} needs arch=... or pretrained_cfg_overlay=dict(file=<model.pt>)"
            )
        arch, preprocess = _arch_from_checkpoint(file)
    spec = resolve_arch(plain_arch(arch))
    if kwargs.get("pretrained_cfg") is None:
        kwargs["pretrained_cfg"] = pretrained_cfg(spec, preprocess)
    return create(GENERIC, spec, pretrained, **kwargs)


def _arch_from_checkpoint(file: str | Path) -> tuple[ArchSpec, dict[str, Any]]:
    from dnatool.utils.io import load_checkpoint

    path = Path(file)
    data = load_checkpoint(path / MODEL_FILE if path.is_dir() else path, "model")
    return ArchSpec.from_dict(data["arch"]), data.get("preprocess", {})


def plain_arch(arch: Any) -> Any:
    """Configs hand over tuples and ConfigDicts: make them the lists/dicts resolve_arch expects."""
    if isinstance(arch, (list, tuple)):
        return [plain_arch(a) for a in arch]
    if isinstance(arch, dict):
        return {str(k): plain_arch(v) for k, v in arch.items()}
    return arch


def _register_generic() -> None:
    """Registered at import, like timm's own model modules do with their entrypoints."""
    from timm.models._registry import register_model

    register_model(dnatool_model)


_register_generic()
