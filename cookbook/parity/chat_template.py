"""Second oracle for the renderers whose tokenizer ships a chat template: what
``apply_chat_template`` renders for a case, next to what the renderer does. Runs where goldens are
made (the reference's virtualenv); the tests read what it recorded. :mod:`.harmony` (gpt-oss) and
:mod:`.dsv4` (DeepSeek V4) are the oracles of renderers whose tokenizers ship none."""

from __future__ import annotations

from typing import Any

from cookbook.parity.record import oracle_record

CHAT_TEMPLATE_ORACLE = "chat_template"
CHAT_TEMPLATE_KWARGS: dict[str, dict[str, Any]] = {
    "qwen3": {},
    "qwen3_disable_thinking": {"enable_thinking": False},
    "qwen3_5": {},
    "qwen3_5_disable_thinking": {"enable_thinking": False},
    "qwen3_5_preserve_thinking": {},
    "deepseekv3": {},
    "deepseekv3_disable_thinking": {},
    "deepseekv3_thinking": {"thinking": True},
}
"""Renderer -> ``apply_chat_template`` keyword arguments selecting the same mode of the template
its tokenizer ships. A renderer not listed has no chat-template oracle, and
``specs/renderers/exclusions.yaml`` says why."""


def chat_template_oracle(
    renderer: Any,
    tokenizer: Any,
    messages: list[dict[str, Any]],
    train_on_what: Any,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """What the chat template renders for a case, and whether the renderer agrees with it.

    Messages go to the template as the renderer's own ``to_openai_message`` converts them
    (recorded as ``messages.openai``). Two items, compared the way the reference's
    ``renderers_test.py`` compares them:

    * ``generation``: token ids of ``build_generation_prompt(prompt)`` and of
      ``apply_chat_template(prompt, add_generation_prompt=True)``, where ``prompt`` is the case
      without its final assistant message (the prompt that message is sampled from); None when
      nothing precedes it.
    * ``supervised`` (cases ending with an assistant message): the decoded text of
      ``build_supervised_example(messages, train_on_what)`` (the case's first mode: the tokens do
      not depend on it, but ``trainable`` flags do) and the template's text of the conversation,
      less one trailing newline (the template ends a turn with the separator that the renderer
      writes before the next turn). Text, not ids: the template tokenizes the conversation in
      one piece, while an example is a prompt plus what was sampled after it, so the two can
      split the same text differently at the boundary.

    A side that raises is recorded as an error; both refusing counts as agreement.
    """

    def convert(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [renderer.to_openai_message(m) for m in conversation]

    def template(conversation: list[dict[str, Any]], **extra: Any) -> Any:
        return tokenizer.apply_chat_template(convert(conversation), **extra, **kwargs)

    def prompt_ids(prompt: list[dict[str, Any]]) -> list[int]:
        return _ids(template(prompt, add_generation_prompt=True, tokenize=True))

    def text(whole: list[dict[str, Any]]) -> str:
        return template(whole, add_generation_prompt=False, tokenize=False).removesuffix("\n")

    return oracle_record(
        renderer,
        tokenizer,
        messages,
        train_on_what,
        setting=("kwargs", kwargs),
        messages_as=("openai", convert),
        prompt_ids=prompt_ids,
        conversation=("text", text),
    )


def _ids(result: Any) -> list[int]:
    """``apply_chat_template(tokenize=True)`` ids: a list, or a BatchEncoding in transformers 5."""
    return list(result["input_ids"]) if hasattr(result, "input_ids") else list(result)
