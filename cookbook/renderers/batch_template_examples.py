"""The batch renderer's template fast path, its assembly: plain conversations planned by a
:class:`~cookbook.renderers.batch_template.ChatTemplate`, their texts encoded in one batch per
encoding hook, one chunk per distinct text, weights with numpy.

A conversation that is not plain is rendered by the renderer where it stands in the batch, so
its examples, errors and warnings come in the order one-at-a-time rendering gives them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_memo import TokenMemo, memo_view
from cookbook.renderers.batch_template import ChatTemplate, Layout, MessageTexts
from cookbook.renderers.batch_template_assembly import Assembly, texts_to_encode
from cookbook.renderers.types import Example, Message, TrainOnWhat

# The messages the generation-prompt check gets, the rendered messages, their texts and layout.
Plan = tuple[list[Message], list[Message], list[MessageTexts], Layout]


def template_examples(
    template: ChatTemplate,
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
) -> list[Example]:
    """``[renderer.build_supervised_example(m, train_on_what) for m in conversations]``, the
    plain ones from the template."""
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    leading = template.leading_messages(renderer)
    # The caller's messages and their plan, or None for a conversation that is not plain.
    plans: list[tuple[list[Message], Plan | None]] = []
    for messages in conversations:
        try:
            plans.append((messages, template.plan(renderer, messages, customized, leading)))
        except Exception:
            plans.append((messages, None))

    texts, split_texts = texts_to_encode((plan for _, plan in plans), template.fixed_texts())
    memo = TokenMemo(renderer)
    memo.prefetch(texts)
    memo.prefetch(split_texts, split=True)
    assembly = Assembly(renderer, memo, train_on_what)
    # Only these two modes can zero a generation prompt (Renderer._first_trained_message_index).
    check_prompt = train_on_what in (
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.LAST_ASSISTANT_TURN,
    )
    warn = None if template.warning_method is None else getattr(renderer, template.warning_method)
    view: Renderer | None = None

    examples: list[Example] = []
    for messages, plan in plans:
        if plan is None:
            examples.append(renderer.build_supervised_example(messages, train_on_what))
            continue
        checked, rendered, message_texts, layout = plan
        if warn is not None:
            warn(messages)
        renderer._warn_if_prefixes_differ(train_on_what)
        example_input, weight_array = assembly.example(rendered, message_texts, layout)
        if check_prompt:
            if view is None:
                view = memo_view(renderer, memo)
            scope = (
                contextlib.nullcontext()
                if template.scope is None
                else getattr(view, template.scope)(messages)
            )
            with scope:
                weight_array = view._train_after_the_generation_prompt(
                    checked, train_on_what, example_input, weight_array
                )
        examples.append((example_input, weight_array))
    return examples


__all__ = ["template_examples"]
