"""Which renderer suits which model: the reference's ``tinker_cookbook.model_info`` table.

Recipes pick their default renderer here (``Qwen/Qwen3.5-9B-Base`` -> ``role_colon``), so the
table and its errors match the pinned reference (tinker-cookbook 0.5.8) model for model;
``tests/test_model_info.py`` checks every entry against ``golden/model_info.json``, which the
reference itself produced. Renderer names may refer to renderers cookbook has not ported yet:
the table says what the model needs, ``get_renderer`` says what is available.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cookbook.exceptions import ConfigurationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelAttributes:
    """What the reference knows about a model. Frozen: the instances are shared table rows."""

    organization: str
    version_str: str
    size_str: str
    is_chat: bool
    recommended_renderers: tuple[str, ...]
    """Renderer names, most recommended first."""
    is_vl: bool = False
    is_audio_in: bool = False


_LLAMA3 = ("llama3",)
_ROLE_COLON = ("role_colon",)
_QWEN3 = ("qwen3", "qwen3_disable_thinking")
_QWEN3_INSTRUCT = ("qwen3_instruct",)
_QWEN3_VL_INSTRUCT = ("qwen3_vl_instruct",)
_QWEN3_5 = ("qwen3_5", "qwen3_5_disable_thinking", "qwen3_5_preserve_thinking")
_QWEN3_8 = (
    "qwen3_8_xhigh_reasoning",
    "qwen3_8_disable_thinking",
    "qwen3_8_medium_reasoning",
    "qwen3_8_low_reasoning",
)
_DEEPSEEKV3 = ("deepseekv3", "deepseekv3_thinking")
_DEEPSEEKV4_1 = (
    "deepseekv4_1",
    "deepseekv4_1_low_reasoning",
    "deepseekv4_1_max_reasoning",
    "deepseekv4_1_disable_thinking",
    "deepseekv4_1_preserve_thinking",
)
_GPT_OSS = ("gpt_oss_no_sysprompt", "gpt_oss_medium_reasoning")
_KIMI_K2 = ("kimi_k2",)
_KIMI_K25 = ("kimi_k25", "kimi_k25_disable_thinking")
_KIMI_K26 = ("kimi_k26", "kimi_k26_disable_thinking", "kimi_k26_preserve_thinking")
_GLM5_3 = ("glm5_3_max_reasoning", "glm5_3_low_reasoning", "glm5_3_high_reasoning")
_NEMOTRON3 = ("nemotron3", "nemotron3_disable_thinking", "nemotron3_preserve_thinking")
_NEMOTRON3_ULTRA = (
    "nemotron3_ultra",
    "nemotron3_ultra_disable_thinking",
    "nemotron3_ultra_medium_thinking",
    "nemotron3_ultra_preserve_thinking",
)
_NEMOTRON3_SUPER = (*_NEMOTRON3, "nemotron3_low_thinking")
_NEMOTRON3_LIGHTNING = tuple(r for r in _NEMOTRON3_ULTRA if r != "nemotron3_ultra_medium_thinking")
_TML_V0 = ("tml_v0",)

_VL = ("vl",)
_VL_AUDIO = ("vl", "audio")
# (model, version, size, is_chat, renderers, modality flags) per organization.
_Row = tuple[str, str, str, bool, tuple[str, ...], tuple[str, ...]]
_ROWS: dict[str, list[_Row]] = {
    "meta-llama": [
        ("Llama-3.1-8B-Instruct", "3.1", "8B", True, _LLAMA3, ()),
        ("Llama-3.2-1B", "3.2", "1B", False, _ROLE_COLON, ()),
        ("Llama-3.2-3B", "3.2", "3B", False, _ROLE_COLON, ()),
        ("Llama-3.1-8B", "3.1", "8B", False, _ROLE_COLON, ()),
        ("Llama-3.1-70B", "3.1", "70B", False, _ROLE_COLON, ()),
        ("Llama-3.3-70B-Instruct", "3.3", "70B", True, _LLAMA3, ()),
    ],
    "Qwen": [
        ("Qwen3-VL-30B-A3B-Instruct", "3", "30B-A3B", True, _QWEN3_VL_INSTRUCT, _VL),
        ("Qwen3-VL-235B-A22B-Instruct", "3", "235B-A22B", True, _QWEN3_VL_INSTRUCT, _VL),
        ("Qwen3-8B-Base", "3", "8B", False, _ROLE_COLON, ()),
        ("Qwen3-30B-A3B-Base", "3", "30B-A3B", False, _ROLE_COLON, ()),
        ("Qwen3-8B", "3", "8B", True, _QWEN3, ()),
        ("Qwen3-32B", "3", "32B", True, _QWEN3, ()),
        ("Qwen3-30B-A3B", "3", "30B-A3B", True, _QWEN3, ()),
        ("Qwen3-4B-Instruct-2507", "3", "4B", True, _QWEN3_INSTRUCT, ()),
        ("Qwen3-30B-A3B-Instruct-2507", "3", "30B-A3B", True, _QWEN3_INSTRUCT, ()),
        ("Qwen3-235B-A22B-Instruct-2507", "3", "235B-A22B", True, _QWEN3_INSTRUCT, ()),
        ("Qwen3.5-4B", "3.5", "4B", True, _QWEN3_5, _VL),
        ("Qwen3.5-9B", "3.5", "9B", True, _QWEN3_5, _VL),
        ("Qwen3.5-9B-Base", "3.5", "9B", False, _ROLE_COLON, _VL),
        ("Qwen3.5-27B", "3.5", "27B", True, _QWEN3_5, _VL),
        ("Qwen3.5-35B-A3B", "3.5", "35B-A3B", True, _QWEN3_5, _VL),
        ("Qwen3.5-35B-A3B-Base", "3.5", "35B-A3B", False, _ROLE_COLON, _VL),
        ("Qwen3.5-397B-A17B", "3.5", "397B-A17B", True, _QWEN3_5, _VL),
        # Qwen3.6 shares Qwen3.5's tokenizer and chat template, hence its renderers.
        ("Qwen3.6-27B", "3.6", "27B", True, _QWEN3_5, _VL),
        ("Qwen3.6-35B-A3B", "3.6", "35B-A3B", True, _QWEN3_5, _VL),
        ("Qwen3.8-27B", "3.8", "27B", True, _QWEN3_8, _VL),
    ],
    "deepseek-ai": [
        ("DeepSeek-V3.1", "3", "671B-A37B", True, _DEEPSEEKV3, ()),
        ("DeepSeek-V3.1-Base", "3", "671B-A37B", False, _ROLE_COLON, ()),
        ("DeepSeek-V4.1-Flash", "4.1", "552B-A16B", True, _DEEPSEEKV4_1, ()),
        ("DeepSeek-V4.1-Flash-1017", "4.1", "552B-A16B", True, _DEEPSEEKV4_1, ()),
    ],
    "openai": [
        ("gpt-oss-20b", "1", "21B-A3.6B", True, _GPT_OSS, ()),
        ("gpt-oss-120b", "1", "117B-A5.1B", True, _GPT_OSS, ()),
    ],
    "moonshotai": [
        ("Kimi-K2-Thinking", "K2", "1T-A32B", True, _KIMI_K2, ()),
        ("Kimi-K2.5", "K2.5", "1T-A32B", True, _KIMI_K25, _VL),
        ("Kimi-K2.6", "K2.6", "1T-A32B", True, _KIMI_K26, _VL),
    ],
    "zai-org": [
        ("GLM-5.3", "5.3", "744B-A40B", True, _GLM5_3, ()),
        ("GLM-5.3-Flash", "5.3", "320B-A18B", True, _GLM5_3, ()),
    ],
    "nvidia": [
        ("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "3", "30B-A3B", True, _NEMOTRON3, ()),
        ("NVIDIA-Nemotron-3-Super-120B-A12B-BF16", "3", "120B-A12B", True, _NEMOTRON3_SUPER, ()),
        ("NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16", "3", "550B-A55B", True, _NEMOTRON3_ULTRA, ()),
        (
            "NVIDIA-Nemotron-3.5-Lightning-30B-A3B-BF16",
            "3.5",
            "30B-A3B",
            True,
            _NEMOTRON3_LIGHTNING,
            (),
        ),
        (
            "NVIDIA-Nemotron-3.5-Super-VL-120B-A12B-BF16",
            "3.5",
            "120B-A12B",
            True,
            _NEMOTRON3_ULTRA,
            _VL,
        ),
    ],
    "thinkingmachines": [
        ("Inkling", "1", "975B-A41B", True, _TML_V0, _VL_AUDIO),
        ("Inkling-Small", "1", "276B-A12B", True, _TML_V0, _VL_AUDIO),
    ],
}

_TABLE: dict[str, dict[str, ModelAttributes]] = {
    org: {
        name: ModelAttributes(org, version, size, chat, renderers, "vl" in flags, "audio" in flags)
        for name, version, size, chat, renderers, flags in rows
    }
    for org, rows in _ROWS.items()
}
# Inkling models are looked up by name prefix, not by organization: any other
# ``thinkingmachines/...`` id is an unknown model, and an unlisted ``Inkling*`` one gets the
# family defaults (the reference's fallback for Inkling releases newer than its table).
_INKLING_PREFIX = "thinkingmachines/Inkling"
_PREFIX_ONLY_ORGS = frozenset({"thinkingmachines"})


def known_model_names() -> list[str]:
    """Every ``org/model`` id in the table, in table order."""
    return [f"{org}/{name}" for org, models in _TABLE.items() for name in models]


def get_model_attributes(model_name: str) -> ModelAttributes:
    """Attributes of ``org/model`` (a ``:checkpoint`` suffix is ignored).

    Errors, as the reference raises them: no ``/`` -> ``ValueError``; unknown organization ->
    :class:`ConfigurationError` ``"Unknown model: ..."``; unknown model of a known organization
    -> ``KeyError``.
    """
    model_name = model_name.split(":", 1)[0]
    if "/" not in model_name:
        raise ValueError(f"Model name must be in 'org/model' format, got {model_name!r}")
    org, model = model_name.split("/", 1)
    if org in _TABLE and org not in _PREFIX_ONLY_ORGS:
        models = _TABLE[org]
        if model not in models:
            raise KeyError(f"{model!r} is not a known {org} model; known: {', '.join(models)}")
        return models[model]
    if model_name.startswith(_INKLING_PREFIX):
        inkling = _TABLE["thinkingmachines"]
        return inkling.get(
            model,
            ModelAttributes(org, model, model, True, _TML_V0, is_vl=True, is_audio_in=True),
        )
    raise ConfigurationError(f"Unknown model: {model_name}")


def get_recommended_renderer_names(model_name: str) -> list[str]:
    """Renderers designed for the model, most recommended first."""
    return list(get_model_attributes(model_name).recommended_renderers)


def get_recommended_renderer_name(model_name: str) -> str:
    """The default renderer for the model (what recipes use when none is given)."""
    return get_recommended_renderer_names(model_name)[0]


def warn_if_renderer_not_recommended(model_name: str, renderer_name: str | None) -> None:
    """Log a warning when ``renderer_name`` is not one the model was trained to read.

    Silent for ``None`` (the caller takes the default) and for models the table does not know:
    there is nothing to check against, and refusing them would block custom models.
    """
    if renderer_name is None:
        return
    try:
        recommended = get_recommended_renderer_names(model_name)
    except (ConfigurationError, KeyError, ValueError):
        return
    if renderer_name not in recommended:
        logger.warning(
            "Renderer %r is not recommended for model %r. Recommended renderer(s): %s. "
            "Using an incompatible renderer can silently degrade training quality "
            "(e.g., prefilling tokens the model was never trained on).",
            renderer_name,
            model_name,
            ", ".join(repr(r) for r in recommended),
        )


__all__ = [
    "ModelAttributes",
    "get_model_attributes",
    "get_recommended_renderer_name",
    "get_recommended_renderer_names",
    "known_model_names",
    "warn_if_renderer_not_recommended",
]
