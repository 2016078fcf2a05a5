"""The Qwen renderers' batch templates (``cookbook/renderers/batch_templates_qwen.py``) equal
the renderers: where a template's text depends on the message's place (the produced turn, a
turn after the last user message, the first header), on its content (trimmed, leading newlines,
``<think>``), on a system message the renderer rewrites (Qwen3.8's reasoning effort) or on
``trainable`` flags, and that each renderer really takes the template path.

``tests/test_batch_parity.py`` covers every golden case and generic generated conversations;
these are the cases the templates' variants are about.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch_parity import SPECS, check_generated

from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.renderers.batch import TEMPLATES
from cookbook.tokenizers import get_tokenizer

QWEN_RENDERERS = sorted(name for name in SPECS if name.startswith("qwen3"))


@cache
def _renderer(name: str) -> Renderer:
    return get_renderer(name, get_tokenizer(SPECS[name].model_name, "offline"))


# Content where the templates' variants and content rules matter: whitespace the Qwen3.5
# family trims and Qwen3's produced turn drops, think tags (refused), literal markers, braces.
_CONTENT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "\n\nAnswer.",
            "  padded  \n",
            "a\n\nb",
            "<think>r</think>\n\nans",
            "</think> after",
            "<think>open",
            "literal <|im_end|> and <|im_start|>user\n",
            "<|endoftext|>",
            "{role} {Role} {}",
            "Reasoning effort is set to low. Keep your thinking brief and focused, moving "
            "directly to the conclusion without unnecessary elaboration.",
        ]
    ),
    st.lists(st.sampled_from(["a", " ", "\n", "é", "<", ">", "/", "think"]), max_size=8).map(
        "".join
    ),
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]), "content": _CONTENT}
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
@pytest.mark.parametrize("name", QWEN_RENDERERS)
def test_generated_plain_conversations_equal_per_conversation(
    name: str, data: st.DataObject
) -> None:
    """Any mix of roles, positions and contents, in every mode: the batch equals the renderer
    one conversation at a time, or raises the first error it raises."""
    mode = data.draw(st.sampled_from(list(TrainOnWhat)), label="mode")
    batch = data.draw(st.lists(st.lists(_MESSAGE, max_size=5), min_size=1, max_size=4))
    if mode == TrainOnWhat.CUSTOMIZED:
        batch = [[{**m, "trainable": data.draw(st.booleans())} for m in c] for c in batch]
    check_generated(_renderer(name), batch, mode)


# Each variant's edge: the produced turn with and without a user message, a turn after the last
# user message that is not last, a first assistant turn, empty and whitespace-only content (a
# system message Qwen3.8 drops), leading newlines, inline reasoning, a later system message.
EDGE_CONVERSATIONS = [
    [
        {"role": "system", "content": "  You are terse. "},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "\n\nSeven.  "},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "assistant", "content": " c"},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ],
    [{"role": "assistant", "content": "first"}],
    [{"role": "assistant", "content": ""}],
    [
        {"role": "system", "content": "   "},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
    ],
    [
        {"role": "user", "content": "x <think>y</think>"},
        {"role": "assistant", "content": "<think>r</think>\n\nans"},
    ],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "lit <|im_end|> x"}],
    [
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "u"},
    ],
    # Qwen3.8 without an instruction drops an empty leading system message, once: the second
    # renders (normalizing twice, as the renderer once did, would drop it too).
    [
        {"role": "system", "content": ""},
        {"role": "system", "content": " "},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ],
]


@pytest.mark.parametrize("train_on_what", list(TrainOnWhat), ids=str)
@pytest.mark.parametrize("name", QWEN_RENDERERS)
def test_edge_conversations_equal_per_conversation(name: str, train_on_what: TrainOnWhat) -> None:
    batch = EDGE_CONVERSATIONS
    if train_on_what == TrainOnWhat.CUSTOMIZED:
        batch = [
            [{**m, "trainable": (i + j) % 2 == 0} for j, m in enumerate(c)]
            for i, c in enumerate(batch)
        ]
    check_generated(_renderer(name), batch, train_on_what)
    for conversation in batch:  # one by one too: an error in one hides nothing in the others
        check_generated(_renderer(name), [conversation], train_on_what)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("qwen3", {"strip_thinking_from_history": False}),
        ("qwen3_vl", {"merge_text_chunks": False}),
        ("qwen3_8_xhigh_reasoning", {"strip_thinking_from_history": True}),
    ],
)
def test_other_renderer_options_leave_the_template_path(name: str, options: dict) -> None:
    """A template is written for the registered options; a renderer built with others (which
    frame or encode plain turns differently) is rendered by the generic path, still equal."""
    registered = _renderer(name)
    renderer = type(registered)(registered.tokenizer, **options)
    assert TEMPLATES[type(renderer)].usable(registered)
    assert not TEMPLATES[type(renderer)].usable(renderer)
    for mode in TrainOnWhat:
        batch = EDGE_CONVERSATIONS
        if mode == TrainOnWhat.CUSTOMIZED:
            batch = [[{**m, "trainable": True} for m in c] for c in batch]
        check_generated(renderer, batch, mode)
