"""DeepSeek V4.1's text formats, apart from the renderer: the tools section of the system turn,
DSML tool calls (written and read), and the reshaping of a cookbook conversation into the
template's turns (tool results sorted into call order and merged with the user text around
them into one user turn; a ``tool_declare`` message folded into the system turn).

DSML, as the model writes it after its answer::

    \\n\\n<|DSML| calls>
    <|DSML| invoke name="get_weather">
    <|DSML| parameter name="location" string="true">Paris</|DSML| parameter>
    <|DSML| parameter name="days" string="false">2</|DSML| parameter>
    </|DSML| invoke>
    </|DSML| calls>

(ASCII "|" here; the real marker uses U+FF5C.) One ``parameter`` per argument key; strings
raw with ``string="true"``, every other value JSON.
"""

from __future__ import annotations

import json
import re

from cookbook.exceptions import RendererError
from cookbook.renderers.content import thinking_and_text
from cookbook.renderers.types import Message, ToolCall, UnparsedToolCall, ensure_text

DSML = "\uff5cDSML\uff5c"
CALLS_OPEN = f"<{DSML} calls>"
CALLS_CLOSE = f"</{DSML} calls>"
CALLS_BLOCK = re.compile(rf"(?:\n\n)?{CALLS_OPEN}.*?{CALLS_CLOSE}", re.DOTALL)
_INVOKE = re.compile(rf'<{DSML} invoke name="(.*?)">\n(.*?)</{DSML} invoke>', re.DOTALL)
_PARAMETER = re.compile(
    rf'<{DSML} parameter name="(.*?)" string="(true|false)">(.*?)</{DSML} parameter>', re.DOTALL
)

TOOLS_SECTION = f"""## Tools

You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "{CALLS_OPEN}" block like the following:

{CALLS_OPEN}
<{DSML} invoke name="$TOOL_NAME">
<{DSML} parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML} parameter>
...
</{DSML} invoke>
<{DSML} invoke name="$TOOL_NAME2">
...
</{DSML} invoke>
{CALLS_CLOSE}

String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string="false"`.

If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside <think>...</think> BEFORE any tool calls or final response.

Otherwise, output directly after </think> with tool calls or final response.

### Available Tool Schemas

{{schemas}}

You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.
"""  # noqa: E501 - the template's own lines


def tools_section(tool_declare: Message) -> str:
    """The tools text of a ``tool_declare`` message (an OpenAI-style tool list as JSON)."""
    specs = [tool["function"] for tool in json.loads(ensure_text(tool_declare["content"]))]
    schemas = "\n".join(json.dumps(spec, ensure_ascii=False) for spec in specs)
    return TOOLS_SECTION.replace("{schemas}", schemas)


def arguments_dict(arguments: str) -> dict[str, object]:
    """A call's arguments as a dict; like DeepSeek's encoder, a JSON string of JSON is read
    twice, and anything that is not an object becomes the one key ``arguments``."""
    value: object = arguments
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value if isinstance(value, dict) else {"arguments": arguments}


def _parameter(key: str, value: object) -> str:
    is_string = isinstance(value, str)
    text = value if is_string else json.dumps(value, ensure_ascii=False)
    flag = "true" if is_string else "false"
    return f'<{DSML} parameter name="{key}" string="{flag}">{text}</{DSML} parameter>'


def format_tool_calls(tool_calls: list[ToolCall]) -> str:
    """The calls block that follows an assistant message's answer."""
    invokes = []
    for call in tool_calls:
        params = [_parameter(k, v) for k, v in arguments_dict(call.function.arguments).items()]
        invokes.append(
            f'<{DSML} invoke name="{call.function.name}">\n'
            + "\n".join(params)
            + f"\n</{DSML} invoke>"
        )
    return f"\n\n{CALLS_OPEN}\n" + "\n".join(invokes) + f"\n{CALLS_CLOSE}"


def _read_invoke(invoke: re.Match[str]) -> ToolCall:
    """One invoke as a ToolCall; ValueError (JSONDecodeError included) says what is wrong."""
    name, body = invoke.group(1), invoke.group(2)
    if not name.strip():
        raise ValueError("empty function name")
    if _PARAMETER.sub("", body).strip():
        raise ValueError("text outside parameters")
    arguments: dict[str, object] = {}
    for key, flag, value in _PARAMETER.findall(body):
        if not key.strip():
            raise ValueError("empty parameter name")
        if key in arguments:
            raise ValueError(f"duplicate parameter {key!r}")
        arguments[key] = value if flag == "true" else json.loads(value)
    return ToolCall(function=ToolCall.FunctionBody(name=name, arguments=json.dumps(arguments)))


def parse_calls_block(block: str) -> tuple[list[ToolCall], list[UnparsedToolCall]]:
    """The calls of one ``CALLS_BLOCK`` match; an invalid invoke is kept as unparsed, and a
    block that is not a sequence of invokes is one unparsed call."""
    body = block.removeprefix("\n\n").removeprefix(CALLS_OPEN).removesuffix(CALLS_CLOSE)
    invokes = list(_INVOKE.finditer(body))
    if not invokes or _INVOKE.sub("", body).strip():
        return [], [UnparsedToolCall(raw_text=block, error="Invalid DSML: malformed invoke")]
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    for invoke in invokes:
        try:
            calls.append(_read_invoke(invoke))
        except ValueError as exc:
            unparsed.append(
                UnparsedToolCall(raw_text=invoke.group(0), error=f"Invalid DSML: {exc}")
            )
    return calls, unparsed


def split_assistant_content(message: Message) -> tuple[str, str]:
    """(reasoning, answer) of an assistant message; string content is all answer."""
    content = message["content"]
    if isinstance(content, str):
        return "", content
    reasoning, answer = thinking_and_text(content, "DeepSeek V4.1")
    return "".join(reasoning), "".join(answer)


def is_user_turn(message: Message) -> bool:
    """Tool results belong to the user turn in V4.1: there is no tool role."""
    return message["role"] in ("user", "tool")


def _fold_tool_declarations(messages: list[Message]) -> None:
    for idx, message in enumerate(messages):
        if message["role"] != "tool_declare":
            continue
        tools = tools_section(message)
        if idx == 0:
            messages[0] = {**message, "role": "system", "content": "\n\n" + tools}
        elif idx == 1 and messages[0]["role"] == "system":
            system = ensure_text(messages[0]["content"])
            messages[0] = {**messages[0], "content": f"{system}\n\n{tools}"}
            messages[1] = {**message, "content": ""}
        else:
            raise RendererError(
                "DeepSeek V4.1 tool declarations must come first or right after the "
                "first system message; use create_conversation_prefix_with_tools"
            )


def _in_call_order(turn: list[Message], call_order: dict[str, int]) -> list[Message]:
    """The turn with its tool results stably sorted into call order, in the slots tool
    messages hold; an id no call has sorts as call 0 (DeepSeek's encoder does the same)."""
    results = iter(
        sorted(
            (m for m in turn if m["role"] == "tool"),
            key=lambda m: call_order.get(m.get("tool_call_id") or "", 0),
        )
    )
    return [next(results) if m["role"] == "tool" else m for m in turn]


def template_turns(messages: list[Message]) -> list[Message]:
    """The conversation as the template's turns, one message per input index.

    The first message of a run of user and tool messages carries the whole user turn's text
    (tool results as ``<tool_result>`` blocks, joined by ``\\n\\n``) and the others carry
    nothing: encoding the turn as one string gives the template's tokens, which BPE merges
    across ``\\n\\n`` would otherwise change. Indices are kept, so the base class still sees
    which messages are user turns and which belong to the last assistant turn.
    """
    result = list(messages)
    _fold_tool_declarations(result)
    call_order: dict[str, int] = {}
    idx = 0
    while idx < len(result):
        if tool_calls := result[idx].get("tool_calls"):
            call_order = {call.id: n for n, call in enumerate(tool_calls) if call.id}
        if not is_user_turn(result[idx]):
            idx += 1
            continue
        end = idx
        while end + 1 < len(result) and is_user_turn(result[end + 1]):
            end += 1
        texts = [
            f"<tool_result>{ensure_text(m['content'])}</tool_result>"
            if m["role"] == "tool"
            else ensure_text(m["content"])
            for m in _in_call_order(result[idx : end + 1], call_order)
        ]
        result[idx] = {**result[idx], "content": "\n\n".join(texts)}
        for rest in range(idx + 1, end + 1):
            result[rest] = {**result[rest], "content": ""}
        idx = end + 1
    return result


def last_user_turn(messages: list[Message]) -> int:
    """Index of the template's last user turn: user and tool messages, and system messages
    after the first (the template treats those as turns too); -1 if none."""
    return max(
        (
            idx
            for idx, m in enumerate(messages)
            if is_user_turn(m) or (m["role"] == "system" and idx > 0)
        ),
        default=-1,
    )
