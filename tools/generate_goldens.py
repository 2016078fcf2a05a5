"""Regenerate golden/ from the pinned reference (run by `nox -s golden`, never by CI).

Runs inside a virtualenv that has ``tinker-cookbook==0.5.8`` and our package (``--no-deps``),
or, with ``--reference VERSION``, another release, whose goldens go to golden/<VERSION>/ for the
drift report (a spec whose renderer that release does not register is skipped, saying so):
our package supplies the spec loader and the offline tokenizer *directory*; the reference loads
that directory with its own ``get_tokenizer(path)`` and renders every case with its own
renderers. Everything is rendered in memory first and written only at the end, each file
atomically, the manifest last.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.metadata
import inspect
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

from tinker_cookbook import model_info as ref_model_info
from tinker_cookbook.renderers import RenderContext as RefRenderContext
from tinker_cookbook.renderers import ToolCall as RefToolCall
from tinker_cookbook.renderers import TrainOnWhat as RefTrainOnWhat
from tinker_cookbook.renderers import get_renderer as ref_get_renderer
from tinker_cookbook.tokenizer_utils import get_tokenizer as ref_get_tokenizer

from cookbook.image_processing_utils import image_processor_record, offline_image_processor
from cookbook.parity import golden as g
from cookbook.parity.chat_template import (
    CHAT_TEMPLATE_KWARGS,
    CHAT_TEMPLATE_ORACLE,
    chat_template_oracle,
)
from cookbook.parity.dsv4 import ENCODING_DSV4_KWARGS, ENCODING_DSV4_ORACLE, encoding_dsv4_oracle
from cookbook.parity.harmony import (
    HARMONY_ORACLE,
    HARMONY_RENDERERS,
    TOOL_PREFIX_FILE,
    harmony_oracle,
    tool_prefix_golden,
)
from cookbook.parity.images import has_images, with_images
from cookbook.parity.record import (
    apply_renderer_options,
    error_record,
    render_outputs,
    with_tool_call_objects,
)
from cookbook.parity.reftests import sdist
from cookbook.parity.release_notes import RELEASE_NOTES_FILE, release_notes
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.tokenizers import TokenizerSource, get_tokenizer, offline_directory, provenance
from cookbook.tokenizers.tml import is_tml_model


def reference_versions() -> dict[str, str]:
    names = (g.REFERENCE_PACKAGE, "tinker", "transformers", "tokenizers")
    return {name: importlib.metadata.version(name) for name in names}


def registered_renderer_names() -> list[str]:
    """Every name the reference's ``get_renderer`` knows, read from its ``name == "..."``
    branches (it is an if/elif chain, with no table to list), in its order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(ref_get_renderer)))
    names = [
        node.comparators[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "name"
        and isinstance(node.ops[0], ast.Eq)
        and isinstance(node.comparators[0], ast.Constant)
        and isinstance(node.comparators[0].value, str)
    ]
    if not names:
        raise SystemExit("error: found no renderer names in the reference's get_renderer")
    return sorted(set(names), key=names.index)


def registry_golden(versions: dict[str, str]) -> dict[str, Any]:
    return {
        "schema_version": g.SCHEMA_VERSION,
        "source": f"{ref_get_renderer.__module__}.get_renderer",
        "reference": versions,
        "names": registered_renderer_names(),
    }


def reference_segments(renderer: Any):
    """Segments as the reference's base assembly lays them out (checked against its output).

    Uses the reference's own ``render_message`` with contexts built the way its base
    ``build_supervised_example`` builds them; a renderer that overrides the assembly (its
    lengths or, for text, its tokens differ from the example's) gets no segments (null) rather
    than wrong ones.
    """

    def segments(messages: list[dict[str, Any]], tow: Any) -> list[dict[str, Any]] | None:
        try:
            return laid_out(messages, tow)
        except NotImplementedError:  # renders whole conversations (tml_v0): no per-message parts
            return None

    def laid_out(messages: list[dict[str, Any]], tow: Any) -> list[dict[str, Any]] | None:
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        turn_start = (
            max((i for i, m in enumerate(messages[:-1]) if m["role"] == "user"), default=-1) + 1
        )
        parts: list[tuple[int, str, int]] = []
        tokens: list[int] = []  # what the parts hold, where every chunk is text
        if renderer._bos_tokens:
            parts.append((-1, "bos", len(renderer._bos_tokens)))
            tokens += renderer._bos_tokens
        for idx, message in enumerate(messages):
            ctx = RefRenderContext(
                idx=idx,
                is_last=idx == len(messages) - 1,
                prev_message=messages[idx - 1] if idx > 0 else None,
                next_message=messages[idx + 1] if idx + 1 < len(messages) else None,
                last_user_index=last_user,
                in_last_assistant_turn=idx >= turn_start,
            )
            rendered = renderer.render_message(message, ctx)
            chunks = [("header", rendered.header)] if rendered.header else []
            chunks += [("output", chunk) for chunk in rendered.output]
            if ctx.is_last and rendered.stop_overlap:
                chunks.append(("stop_overlap", rendered.stop_overlap))
            for kind, chunk in chunks:
                parts.append((idx, kind, chunk.length))
                tokens += getattr(chunk, "tokens", [])
        model_input, _ = renderer.build_supervised_example(messages, tow)
        if sum(length for *_, length in parts) != model_input.length:
            return None
        if len(tokens) == model_input.length and tokens != model_input.to_ints():
            return None  # same length, other order (e.g. GLM-5.3 sorts tool results)
        out, start = [], 0
        for message, kind, length in parts:
            out.append({"message": message, "kind": kind, "start": start, "end": start + length})
            start += length
        return out

    return segments


def render_spec(spec_path: Path, spec: RendererCasesSpec, versions: dict) -> dict[Path, dict]:
    ours = provenance(get_tokenizer(spec.model_name, TokenizerSource.OFFLINE))
    # Inkling's tokenizer is tml-renderers' own, which the reference loads by model name.
    tml = is_tml_model(spec.model_name)
    ref_tokenizer = ref_get_tokenizer(
        spec.model_name if tml else str(offline_directory(spec.model_name))
    )
    # The same (stand-in) image processor as our side, for specs with image cases only.
    with_image_cases = any(has_images(case.message_dicts()) for case in spec.cases)
    processor = offline_image_processor(spec.model_name) if with_image_cases else None
    renderer = ref_get_renderer(spec.renderer, ref_tokenizer, processor, model_name=spec.model_name)
    options = apply_renderer_options(renderer)
    segments = reference_segments(renderer)
    goldens: dict[Path, dict] = {}
    for case in spec.cases:
        messages = with_images(with_tool_call_objects(case.message_dicts(), RefToolCall))
        modes = [RefTrainOnWhat(str(t)) for t in case.resolved_train_on_what()]
        golden = {
            "schema_version": g.SCHEMA_VERSION,
            "case_id": case.id,
            "category": case.category,
            "spec": spec_path.as_posix(),
            "renderer": {"name": spec.renderer, "options": options},
            "model_name": spec.model_name,
            "input": {
                "messages": case.message_dicts(),
                "train_on_what": [str(t) for t in modes],
                "sha256": g.case_digest(spec, case),
            },
            "tokenizer": ours.to_json(),
            "reference": versions,
            "outputs": render_outputs(renderer, ref_tokenizer, messages, modes, segments),
        }
        if processor is not None and has_images(case.message_dicts()):
            golden["image_processor"] = image_processor_record(processor)
        if spec.renderer in CHAT_TEMPLATE_KWARGS:
            kwargs = CHAT_TEMPLATE_KWARGS[spec.renderer]
            oracle = chat_template_oracle(renderer, ref_tokenizer, messages, modes[0], kwargs)
            golden["oracles"] = {CHAT_TEMPLATE_ORACLE: oracle}
        if spec.renderer in ENCODING_DSV4_KWARGS:
            kwargs = ENCODING_DSV4_KWARGS[spec.renderer]
            oracle = encoding_dsv4_oracle(renderer, ref_tokenizer, messages, modes[0], kwargs)
            golden["oracles"] = {ENCODING_DSV4_ORACLE: oracle}
        if spec.renderer in HARMONY_RENDERERS:
            oracle = harmony_oracle(renderer, ref_tokenizer, messages, modes[0])
            golden["oracles"] = {HARMONY_ORACLE: oracle}
        goldens[Path("renderers") / spec.renderer / f"{case.id}.json"] = golden
    return goldens


MODEL_INFO_FILE = "model_info.json"
# Names outside the table: each error path, the ":checkpoint" suffix, the Inkling fallback.
MODEL_INFO_PROBES = (
    "Qwen/Qwen3.5-9B-Base:step-100",
    "meta-llama/Llama-3.1-8B:tinker://run/weights/final",
    "Qwen/Qwen3-99B",
    "meta-llama/Llama-9-1B",
    "acme/Foo-1B",
    "Llama-3.1-8B",
    "thinkingmachines/Inkling",
    "thinkingmachines/Inkling-Future",
    "thinkingmachines/Other-1B",
    "qwen/Qwen3-8B",
)
# (model, renderer) pairs for warn_if_renderer_not_recommended: recommended, first choice or not,
# not recommended, no renderer given, and models it cannot judge.
WARNING_PROBES = (
    ("Qwen/Qwen3.5-9B-Base", "role_colon"),
    ("Qwen/Qwen3.5-9B-Base", "qwen3_5"),
    ("Qwen/Qwen3-8B", "qwen3_disable_thinking"),
    ("meta-llama/Llama-3.1-8B-Instruct", "role_colon"),
    ("meta-llama/Llama-3.1-8B-Instruct", None),
    ("acme/Foo-1B", "llama3"),
    ("Qwen/Qwen3-99B", "llama3"),
    ("Llama-3.1-8B", "llama3"),
)


def reference_model_names() -> list[str]:
    """Every ``org/model`` in the reference's table, read from its ``get_*_info`` tables.

    Found by name (they are ``functools.cache`` wrappers, not plain functions), so a table the
    reference adds later is picked up without editing this list.
    """
    names = [
        f"{attrs.organization}/{name}"
        for attr, table_fn in sorted(vars(ref_model_info).items())
        if attr.startswith("get_") and attr.endswith("_info") and callable(table_fn)
        for name, attrs in table_fn().items()
    ]
    if not names:
        raise SystemExit("error: found no get_*_info tables in the reference's model_info")
    return sorted(names)


def _attributes(model_name: str) -> dict[str, Any]:
    try:
        attrs = ref_model_info.get_model_attributes(model_name)
    except Exception as exc:  # the refusal is the recorded behaviour
        return {"error": error_record(exc)}
    return {
        **dataclasses.asdict(attrs),
        "recommended_renderers": list(attrs.recommended_renderers),
        "recommended_renderer_names": ref_model_info.get_recommended_renderer_names(model_name),
        "recommended_renderer_name": ref_model_info.get_recommended_renderer_name(model_name),
    }


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _warns(model_name: str, renderer_name: str | None) -> bool:
    recorder = _Recorder()
    ref_logger = logging.getLogger(ref_model_info.__name__)
    ref_logger.addHandler(recorder)
    try:
        ref_model_info.warn_if_renderer_not_recommended(model_name, renderer_name)
    finally:
        ref_logger.removeHandler(recorder)
    return bool(recorder.records)


def model_info_golden(versions: dict[str, str]) -> dict[str, Any]:
    """The reference's model table and its error behaviour, as ``golden/model_info.json``."""
    return {
        "schema_version": g.SCHEMA_VERSION,
        "source": ref_model_info.__name__,
        "reference": versions,
        "models": {name: _attributes(name) for name in reference_model_names()},
        "probes": {name: _attributes(name) for name in MODEL_INFO_PROBES},
        "warnings": [
            {"model": model, "renderer": renderer, "warns": _warns(model, renderer)}
            for model, renderer in WARNING_PROBES
        ],
    }


def write_subset(
    root: Path, goldens: dict[Path, dict], renderers: set[str], registry: dict[str, Any]
) -> int:
    """Write the goldens of ``renderers`` and the registry, and update their entries in the
    existing manifest."""
    manifest = g.load_manifest(root)
    g.write_atomic(root / g.REGISTRY_FILE, g.dump(registry))
    manifest["registry"] = {g.REGISTRY_FILE: g.file_sha256(root / g.REGISTRY_FILE)}
    for stale in g.golden_files(root):
        relative = stale.relative_to(root)
        if relative.parts[1] in renderers and relative not in goldens:
            stale.unlink()
            manifest["files"].pop(relative.as_posix(), None)
            print(f"removed unused golden {stale}")
    for relative, record in sorted(goldens.items()):
        g.write_atomic(root / relative, g.dump(record))
        manifest["files"][relative.as_posix()] = g.file_sha256(root / relative)
    manifest["files"] = dict(sorted(manifest["files"].items()))
    g.write_atomic(g.manifest_path(root), g.dump(manifest))
    print(f"wrote {len(goldens)} goldens of {', '.join(sorted(renderers))} and the manifest")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, default=Path("specs/renderers"))
    parser.add_argument(
        "--reference",
        default=g.REFERENCE_VERSION,
        metavar="VERSION",
        help=f"the tinker-cookbook release installed here (default {g.REFERENCE_VERSION}, the "
        "gate); another one writes golden/VERSION/ unless --golden says otherwise",
    )
    parser.add_argument("--golden", type=Path, help="default: golden/, or golden/VERSION/")
    parser.add_argument(
        "--renderers",
        nargs="+",
        metavar="NAME",
        help="regenerate only these renderers' goldens and their manifest entries; every other "
        "file (model_info, tool prefixes, other renderers) stays byte for byte",
    )
    args = parser.parse_args(argv)
    versions = reference_versions()
    if versions[g.REFERENCE_PACKAGE] != args.reference:
        print(f"error: need {g.REFERENCE_PACKAGE}=={args.reference}, found {versions}")
        return 2
    args.golden = args.golden or g.reference_dir(Path("golden"), args.reference)
    registry = registry_golden(versions)
    specs = [
        (path, spec)
        for path in sorted(args.specs.glob("*.yaml"))
        if isinstance(spec := load_spec(path), RendererCasesSpec)
    ]
    for path, spec in specs:
        if spec.renderer not in registry["names"]:
            print(f"{path}: skipped: {spec.renderer} is not registered by {args.reference}")
    specs = [(path, spec) for path, spec in specs if spec.renderer in registry["names"]]
    if args.renderers:
        unknown = sorted(set(args.renderers) - {spec.renderer for _, spec in specs})
        if unknown:
            print(f"error: --renderers: no spec in {args.specs} for {', '.join(unknown)}")
            return 2
        specs = [(path, spec) for path, spec in specs if spec.renderer in args.renderers]
    goldens: dict[Path, dict] = {}
    for spec_path, spec in specs:
        goldens.update(render_spec(spec_path, spec, versions))
        print(f"{spec_path}: {len(spec.cases)} cases rendered by the reference")
    if args.renderers:
        return write_subset(args.golden, goldens, set(args.renderers), registry)
    model_info_record = model_info_golden(versions)
    gpt_oss = ref_get_renderer(
        "gpt_oss_no_sysprompt", ref_get_tokenizer(str(offline_directory("openai/gpt-oss-20b")))
    )
    tool_prefixes = {
        "schema_version": g.SCHEMA_VERSION,
        "source": f"{type(gpt_oss).__module__}.create_conversation_prefix_with_tools",
        "reference": versions,
        "probes": tool_prefix_golden(gpt_oss),
    }
    for stale in g.golden_files(args.golden):
        if stale.relative_to(args.golden) not in goldens:
            stale.unlink()
            print(f"removed unused golden {stale}")
    for relative, record in sorted(goldens.items()):
        g.write_atomic(args.golden / relative, g.dump(record))
    model_info = args.golden / MODEL_INFO_FILE
    g.write_atomic(model_info, g.dump(model_info_record))
    print(f"wrote {model_info}")
    g.write_atomic(args.golden / TOOL_PREFIX_FILE, g.dump(tool_prefixes))
    g.write_atomic(args.golden / g.REGISTRY_FILE, g.dump(registry))
    extra = {}
    if args.reference != g.REFERENCE_VERSION:
        # The sdists (registry access, like the installs of this virtualenv) hold CHANGELOG.md.
        notes = release_notes(sdist.fetch(), sdist.fetch(version=args.reference))
        notes = {"schema_version": g.SCHEMA_VERSION, "reference": versions, **notes}
        g.write_atomic(args.golden / RELEASE_NOTES_FILE, g.dump(notes))
        extra["release_notes"] = {
            RELEASE_NOTES_FILE: g.file_sha256(args.golden / RELEASE_NOTES_FILE)
        }
    manifest = {
        "schema_version": g.SCHEMA_VERSION,
        "regenerate": g.REGENERATE
        + ("" if args.reference == g.REFERENCE_VERSION else f" -- --reference {args.reference}"),
        "reference": versions,
        "files": {rel.as_posix(): g.file_sha256(args.golden / rel) for rel in sorted(goldens)},
        # Not a renderer case, so not under "files" (whose keys must be renderer goldens).
        "model_info": {MODEL_INFO_FILE: g.file_sha256(model_info)},
        "tool_prefixes": {TOOL_PREFIX_FILE: g.file_sha256(args.golden / TOOL_PREFIX_FILE)},
        "registry": {g.REGISTRY_FILE: g.file_sha256(args.golden / g.REGISTRY_FILE)},
        **extra,
    }
    g.write_atomic(g.manifest_path(args.golden), g.dump(manifest))
    print(f"wrote {len(goldens)} goldens and {g.manifest_path(args.golden)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
