"""Drift between two reference releases: what upgrading tinker-cookbook changes in what its
renderers and model table produce, read from the goldens each release made of the same spec
cases (golden/ for the pinned gate, golden/<version>/ for the newer one).

Per renderer and case, every recorded output is compared: token ids and weights (the first
differing position, with the same aligned per-token table a failing parity check prints),
decoded text, weight dtype, segments, refusals, stop sequences and parse results. Around that:
the renderer names each release registers, the model-table changes and the release's own
changelog (:mod:`cookbook.parity.drift_report` reads the directories and writes the report).
It reports; it never gates.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cookbook.parity.diff import divergence, first_divergence
from cookbook.parity.layers import first_diff
from cookbook.parity.record import unrle

DRIFT_SCHEMA_VERSION = 1


class Aspect(StrEnum):
    TOKENS = "tokens"
    WEIGHTS = "weights"
    TEXT = "text"
    WEIGHTS_DTYPE = "weights_dtype"
    SEGMENTS = "segments"
    ERROR = "error"
    STOP_SEQUENCES = "stop_sequences"
    PARSE_RESPONSE = "parse_response"
    ORACLE = "oracle"
    """What a second oracle (chat template, harmony) renders, or whether the release agrees."""
    TOKENIZER = "tokenizer"


class CaseStatus(StrEnum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    ONLY_OLD = "only_old"
    ONLY_NEW = "only_new"
    INPUT_CHANGED = "input_changed"
    """The two goldens were made from different spec inputs: regenerate the older one."""


class RendererStatus(StrEnum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    NOT_GENERATED = "not_generated"
    """The newer release registers it, but its goldens were not made for that release yet."""
    REMOVED = "removed"
    ADDED = "added"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Change(_Model):
    item: str
    """``supervised:<train_on_what>``, ``generation_prompt``, ``stop_sequences`` or
    ``parse_response:<ending>``."""
    aspect: Aspect
    position: int | None = None
    """First differing token position (tokens and weights)."""
    summary: str
    diff: str | None = None
    """The aligned per-token table around ``position``."""


class CaseDrift(_Model):
    case: str
    status: CaseStatus
    changes: list[Change] = []


class RendererDrift(_Model):
    renderer: str
    status: RendererStatus
    cases_compared: int
    cases_changed: int
    aspects: dict[Aspect, int]
    """Changed cases per aspect."""
    cases: list[CaseDrift]
    """Every case that is not unchanged."""


class Side(_Model):
    version: str
    golden_dir: str
    reference: dict[str, str]
    manifest_sha256: str


class RegistryDrift(_Model):
    old: list[str] | None
    new: list[str] | None
    added: list[str]
    removed: list[str]
    without_goldens: list[str]
    """Names the newer release registers that neither side has goldens of (cookbook does not
    implement them yet, so there is no spec case to render)."""


class FieldChange(_Model):
    name: str
    field: str
    old: Any = None
    new: Any = None


class ModelInfoDrift(_Model):
    added: list[str]
    removed: list[str]
    changed: list[FieldChange]
    probes_changed: list[FieldChange]
    warnings_changed: list[FieldChange]


class ProbesDrift(_Model):
    """A golden of probes beside the renderer goldens (the gpt-oss tool prefixes)."""

    file: str
    first_difference: str | None
    """None when both releases recorded the same probes."""


class Summary(_Model):
    renderers_compared: int
    renderers_changed: list[str]
    renderers_not_generated: list[str]
    cases_compared: int
    cases_changed: int
    aspects: dict[Aspect, int]


class DriftReport(_Model):
    schema_version: Literal[1] = DRIFT_SCHEMA_VERSION
    old: Side
    new: Side
    summary: Summary
    registry: RegistryDrift
    renderers: list[RendererDrift]
    model_info: ModelInfoDrift | None
    probes: list[ProbesDrift]
    release_notes: dict[str, Any] | None


# -- one golden against the other ---------------------------------------------------------


def _refusal(old: dict[str, Any], new: dict[str, Any], labels: tuple[str, str]) -> str | None:
    """How the refusals of two records differ (a side without ``error`` did not refuse)."""
    if first_diff(old.get("error"), new.get("error")) is None:
        return None
    for side, other, (name, other_name) in ((old, new, labels), (new, old, labels[::-1])):
        if "error" in side and "error" not in other:
            err = side["error"]
            return f"{name} raised {err['type']}: {err['message']!r}; {other_name} did not"
    return f"the refusal changed: {first_diff(old['error'], new['error'])}"


def token_changes(
    item: str, old: dict, new: dict, labels: tuple[str, str], *, weighted: bool
) -> list[Change]:
    """Tokens, weights, text, dtype, segments or refusal of one token record."""
    refusal = _refusal(old, new, labels)
    if refusal or "error" in old:
        return [Change(item=item, aspect=Aspect.ERROR, summary=refusal)] if refusal else []
    old_w = unrle(old["weights"]) if weighted else []
    new_w = unrle(new["weights"]) if weighted else []
    changes = []
    found = divergence(old["ids"], new["ids"], old_w, new_w)
    if found:
        position, what = found
        changes.append(
            Change(
                item=item,
                aspect=Aspect.TOKENS if what == "token" else Aspect.WEIGHTS,
                position=position,
                summary=f"first {what} difference at position {position} "
                f"({len(old['ids'])} -> {len(new['ids'])} tokens)",
                diff=first_divergence(old, new, old_w, new_w, labels),
            )
        )
    elif old["text"] != new["text"]:
        summary = first_diff(old["text"], new["text"]) or ""
        changes.append(Change(item=item, aspect=Aspect.TEXT, summary=summary))
    for key, aspect in (("weights_dtype", Aspect.WEIGHTS_DTYPE), ("segments", Aspect.SEGMENTS)):
        found_key = first_diff(old.get(key), new.get(key)) if weighted else None
        if found_key:
            changes.append(Change(item=item, aspect=aspect, summary=found_key))
    return changes


def parse_changes(old: dict | None, new: dict | None, labels: tuple[str, str]) -> list[Change]:
    item = "parse_response"
    if old is None or new is None:
        if old == new:
            return []
        only = labels[0] if new is None else labels[1]
        return [Change(item=item, aspect=Aspect.PARSE_RESPONSE, summary=f"only {only} parsed")]
    refusal = _refusal(old, new, labels)
    if refusal or "error" in old:
        return [Change(item=item, aspect=Aspect.ERROR, summary=refusal)] if refusal else []
    changes = []
    for ending in sorted(old.keys() | new.keys()):
        where = f"{item}:{ending}"
        if ending not in old or ending not in new:
            only = labels[0] if ending in old else labels[1]
            summary = f"recorded only by {only}"
            changes.append(Change(item=where, aspect=Aspect.PARSE_RESPONSE, summary=summary))
            continue
        refusal = _refusal(old[ending], new[ending], labels)
        found = refusal or first_diff(old[ending], new[ending])
        if found:
            aspect = Aspect.ERROR if refusal else Aspect.PARSE_RESPONSE
            changes.append(Change(item=where, aspect=aspect, summary=found))
    return changes


def case_drift(old: dict[str, Any], new: dict[str, Any], labels: tuple[str, str]) -> CaseDrift:
    """Every output of one case that differs between two releases' goldens of it."""
    if old["input"].get("sha256") != new["input"].get("sha256"):
        return CaseDrift(case=old["case_id"], status=CaseStatus.INPUT_CHANGED)
    changes = []
    if old["tokenizer"].get("files") != new["tokenizer"].get("files"):
        summary = "the goldens were made with different tokenizer files"
        changes.append(Change(item="tokenizer", aspect=Aspect.TOKENIZER, summary=summary))
    before, after = old["outputs"], new["outputs"]
    for mode in sorted(before["supervised"].keys() | after["supervised"].keys()):
        item = f"supervised:{mode}"
        a, b = before["supervised"].get(mode), after["supervised"].get(mode)
        if a is None or b is None:
            summary = f"recorded only by {labels[0] if b is None else labels[1]}"
            changes.append(Change(item=item, aspect=Aspect.ERROR, summary=summary))
        else:
            changes += token_changes(item, a, b, labels, weighted=True)
    changes += token_changes(
        "generation_prompt",
        before["generation_prompt"],
        after["generation_prompt"],
        labels,
        weighted=False,
    )
    stop = first_diff(before["stop_sequences"], after["stop_sequences"])
    if stop:
        changes.append(Change(item="stop_sequences", aspect=Aspect.STOP_SEQUENCES, summary=stop))
    changes += parse_changes(before["parse_response"], after["parse_response"], labels)
    oracle = first_diff(old.get("oracles"), new.get("oracles"))
    if oracle:
        changes.append(Change(item="oracles", aspect=Aspect.ORACLE, summary=oracle))
    status = CaseStatus.CHANGED if changes else CaseStatus.UNCHANGED
    return CaseDrift(case=old["case_id"], status=status, changes=changes)
