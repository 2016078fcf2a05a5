"""Load a spec file into its model, with errors that point at ``file:line: field.path``.

PyYAML's composed node tree keeps source positions; a pydantic error location is walked down
that tree to the deepest node that exists, so even a missing key points at its parent mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cookbook.exceptions import SpecError
from cookbook.specs.models import SPEC_KINDS

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")


def _yaml(path: Path, parse: Callable[[], T]) -> T:
    """Run a PyYAML parse; anything it rejects - syntax, a tag it cannot construct, a value
    its constructor refuses, nesting deeper than the parser recurses - is one SpecError."""
    try:
        return parse()
    except SpecError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(str(path), line, "", f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), None, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SpecError(str(path), None, "", "invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor refused a scalar
        raise SpecError(str(path), None, "", f"invalid YAML value: {exc}") from None


def _compose(path: Path, text: str) -> yaml.Node | None:
    return _yaml(path, lambda: yaml.compose(text, Loader=yaml.SafeLoader))


def _parse(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data of a YAML document, constructed from that
    tree: ``yaml.safe_load`` composes the same tree and constructs it, so parsing once gives
    the same data at half the cost.

    libyaml's parser first where PyYAML has it (the same nodes and marks, a sixth of the pure
    parser's time, which was a tenth of a parity run); a document it refuses is parsed again by
    the pure parser, whose error (and line) is the one reported, as without libyaml."""
    if yaml.__with_libyaml__:
        try:
            return _parse_with(path, text, yaml.CSafeLoader)
        except SpecError:
            pass
    return _parse_with(path, text, yaml.SafeLoader)


def _parse_with(
    path: Path, text: str, loader_class: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
) -> tuple[yaml.Node | None, Any]:
    loader = _yaml(path, lambda: loader_class(text))  # the reader checks the characters
    try:
        root = _yaml(path, loader.get_single_node)
        if root is None:
            return None, None
        _yaml(path, lambda: _check_duplicate_keys(path, root))
        return root, _yaml(path, lambda: loader.construct_document(root))
    finally:
        loader.dispose()


def _check_duplicate_keys(
    path: Path, node: yaml.Node, loc: Loc = (), checked: set[int] | None = None
) -> None:
    """Reject a key given twice in one mapping. Each node is checked once: an alias shares its
    anchor's node, so nested aliases (a "billion laughs" file) cost no more than the file."""
    checked = set() if checked is None else checked
    if id(node) in checked:
        return
    checked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a complex key: loading refuses it (unhashable) with its line
            if key.value in seen:
                field = ".".join(map(str, (*loc, key.value)))
                raise SpecError(str(path), key.start_mark.line + 1, field, "duplicate key")
            seen.add(key.value)
            _check_duplicate_keys(path, value, (*loc, key.value), checked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(path, item, (*loc, index), checked)


def line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the deepest node along ``loc`` (a key's own line for mapping keys)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _first_error(exc: ValidationError) -> tuple[Loc, str]:
    error = exc.errors(include_url=False)[0]
    # Pydantic appends union-member / validator tags (e.g. 'str', 'list[...]') to the location;
    # keep only the real path into the document.
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or not _is_tag(p))
    return loc, error["msg"]


def _is_tag(part: str) -> bool:
    return any(ch in part for ch in "[]()") or part in {"str", "int", "float", "bool"}


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """``a.b=value`` -> (("a", "b"), value parsed as a YAML scalar, like the file's)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", None, "", f"expected KEY=VALUE, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        value = raw  # not YAML: the text itself, which validation then judges
    return tuple(part.strip() for part in key.split(".")), value


def _apply_override(data: dict[str, Any], keys: tuple[str, ...], value: Any, item: str) -> None:
    target = data
    for depth, key in enumerate(keys[:-1]):
        child = target.get(key)
        if child is None:
            child = target[key] = {}
        if not isinstance(child, dict):
            field = ".".join(keys[: depth + 1])
            raise SpecError("--set", None, field, f"{item!r}: {field} is not a mapping")
        target = child
    target[keys[-1]] = value


def _profile_overlay(
    data: dict[str, Any], parsed: list[tuple[tuple[str, ...], Any, str]], local_engine: bool
) -> tuple[str, dict[tuple[str, ...], str]]:
    """Apply a recipe's backend profile overlay: ``local.overlay`` when it will train the local
    stand-in (on the local backend, or with ``local_engine`` through a cookbook-serve that
    serves it); ``fake.overlay`` (RL recipes) on the fake backend.

    Applied before ``--set`` (so an explicit override wins) but decided after it (so
    ``--set backend=fake`` turns the local overlay off). Returns the profile and the applied
    keys, for error locations.
    """
    if data.get("kind") not in ("recipe", "rl_recipe"):
        return "", {}
    backend = next((v for k, v, _ in parsed if k == ("backend",)), data.get("backend", "local"))
    profile = "local" if backend == "local" or local_engine else str(backend)
    if profile not in ("local", "fake"):
        return "", {}
    section = data.get(profile)
    overlay = section.get("overlay") if isinstance(section, dict) else None
    if not isinstance(overlay, dict):
        return "", {}
    applied: dict[tuple[str, ...], str] = {}
    for key, value in overlay.items():
        keys = tuple(str(key).split("."))
        _apply_override(data, keys, value, f"{profile}.overlay.{key}")
        applied[keys] = str(key)
    return profile, applied


def validate_document(
    path: Path,
    root: yaml.Node | None,
    data: Any,
    overrides: tuple[str, ...] = (),
    local_engine: bool = False,
) -> BaseModel:
    """Validate already-parsed YAML ``data`` (plus ``--set`` overrides) against its kind's model.

    An error inside an overridden field names the override rather than a line of the file,
    since that is where the bad value came from.
    """
    if not isinstance(data, dict):
        raise SpecError(str(path), line_of(root, ()), "", "a spec must be a mapping with 'kind:'")
    parsed = [(*parse_override(item), item) for item in overrides]
    overridden: dict[tuple[str, ...], str] = {}
    profile, overlaid = _profile_overlay(data, parsed, local_engine)
    for keys, value, item in parsed:
        _apply_override(data, keys, value, item)
        overridden[keys] = item
        overlaid.pop(keys, None)
    kind = data.get("kind")
    model = SPEC_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise SpecError(
            str(path),
            line_of(root, ("kind",)),
            "kind",
            f"unknown spec kind {kind!r}; known kinds: {', '.join(sorted(SPEC_KINDS))}",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message = _first_error(exc)
        field = ".".join(str(p) for p in loc)
        for keys, item in overridden.items():
            if tuple(map(str, loc[: len(keys)])) == keys:
                raise SpecError(f"{path} (--set {item})", None, field, message) from None
        for keys, key in overlaid.items():
            if tuple(map(str, loc[: len(keys)])) == keys:
                where = (profile, "overlay", key)
                raise SpecError(str(path), line_of(root, where), ".".join(where), message) from None
        raise SpecError(str(path), line_of(root, loc), field, message) from None


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), None, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), None, "", f"cannot read spec: {exc}") from None


def load_spec(
    path: str | Path, overrides: tuple[str, ...] | list[str] = (), local_engine: bool = False
) -> BaseModel:
    """Read, parse and validate a spec file; any problem is a one-line :class:`SpecError`.

    ``local_engine``: the recipe will train the local stand-in whatever its backend (a
    ``backend: tinker`` run served by cookbook-serve), so its local profile overlay applies."""
    path = Path(path)
    root, data = _parse(path, _read(path))
    return validate_document(path, root, data, tuple(overrides), local_engine)


def load_model_file(path: str | Path, model: type[ModelT]) -> ModelT:
    """A YAML file that is one pydantic ``model`` (no ``kind:``), e.g. ``cookbook-serve``'s
    model map; errors are one-line :class:`SpecError` s like a spec's."""
    path = Path(path)
    root, data = _parse(path, _read(path))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message = _first_error(exc)
        raise SpecError(str(path), line_of(root, loc), ".".join(map(str, loc)), message) from None


def field_error(path: str | Path, loc: Loc, message: str) -> SpecError:
    """A :class:`SpecError` for a value that validated but does not work (a missing file...),
    pointing at the line of ``loc`` in the spec file."""
    path = Path(path)
    try:
        root = _compose(path, path.read_text("utf-8"))
    except (OSError, SpecError):
        root = None
    return SpecError(str(path), line_of(root, loc), ".".join(map(str, loc)), message)
