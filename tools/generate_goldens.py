"""Regenerate golden/ from the pinned reference (run by `nox -s golden`, never by CI).

Runs inside a virtualenv that has ``tinker-cookbook==0.5.8`` and our package (``--no-deps``):
our package supplies the spec loader and the offline tokenizer *directory*; the reference loads
that directory with its own ``get_tokenizer(path)`` and renders every case with its own
renderers. Everything is rendered in memory first and written only at the end, each file
atomically, the manifest last.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

from tinker_cookbook.renderers import RenderContext as RefRenderContext
from tinker_cookbook.renderers import ToolCall as RefToolCall
from tinker_cookbook.renderers import TrainOnWhat as RefTrainOnWhat
from tinker_cookbook.renderers import get_renderer as ref_get_renderer
from tinker_cookbook.tokenizer_utils import get_tokenizer as ref_get_tokenizer

from cookbook.parity import golden as g
from cookbook.parity.record import render_outputs, with_tool_call_objects
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.tokenizers import TokenizerSource, get_tokenizer, offline_directory, provenance


def reference_versions() -> dict[str, str]:
    names = (g.REFERENCE_PACKAGE, "tinker", "transformers", "tokenizers")
    return {name: importlib.metadata.version(name) for name in names}


def reference_segments(renderer: Any):
    """Segments as the reference's base assembly lays them out (checked against its output).

    Uses the reference's own ``render_message`` with contexts built the way its base
    ``build_supervised_example`` builds them; a renderer that overrides the assembly gets no
    segments (null) rather than wrong ones.
    """

    def segments(messages: list[dict[str, Any]], tow: Any) -> list[dict[str, Any]] | None:
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        turn_start = (
            max((i for i, m in enumerate(messages[:-1]) if m["role"] == "user"), default=-1) + 1
        )
        parts: list[tuple[int, str, int]] = []
        if renderer._bos_tokens:
            parts.append((-1, "bos", len(renderer._bos_tokens)))
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
            if rendered.header:
                parts.append((idx, "header", rendered.header.length))
            parts.extend((idx, "output", chunk.length) for chunk in rendered.output)
            if ctx.is_last and rendered.stop_overlap:
                parts.append((idx, "stop_overlap", rendered.stop_overlap.length))
        model_input, _ = renderer.build_supervised_example(messages, tow)
        if sum(length for *_, length in parts) != model_input.length:
            return None
        out, start = [], 0
        for message, kind, length in parts:
            out.append({"message": message, "kind": kind, "start": start, "end": start + length})
            start += length
        return out

    return segments


def render_spec(spec_path: Path, spec: RendererCasesSpec, versions: dict) -> dict[Path, dict]:
    directory = offline_directory(spec.model_name)
    ours = provenance(get_tokenizer(spec.model_name, TokenizerSource.OFFLINE))
    ref_tokenizer = ref_get_tokenizer(str(directory))
    renderer = ref_get_renderer(spec.renderer, ref_tokenizer, model_name=spec.model_name)
    segments = reference_segments(renderer)
    goldens: dict[Path, dict] = {}
    for case in spec.cases:
        messages = with_tool_call_objects(case.message_dicts(), RefToolCall)
        modes = [RefTrainOnWhat(str(t)) for t in case.resolved_train_on_what()]
        goldens[Path("renderers") / spec.renderer / f"{case.id}.json"] = {
            "schema_version": g.SCHEMA_VERSION,
            "case_id": case.id,
            "category": case.category,
            "spec": spec_path.as_posix(),
            "renderer": {"name": spec.renderer, "options": {}},
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
    return goldens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, default=Path("specs/renderers"))
    parser.add_argument("--golden", type=Path, default=Path("golden"))
    args = parser.parse_args(argv)
    versions = reference_versions()
    if versions[g.REFERENCE_PACKAGE] != g.REFERENCE_VERSION:
        print(f"error: need {g.REFERENCE_PACKAGE}=={g.REFERENCE_VERSION}, found {versions}")
        return 2
    goldens: dict[Path, dict] = {}
    for spec_path in sorted(args.specs.glob("*.yaml")):
        spec = load_spec(spec_path)
        if isinstance(spec, RendererCasesSpec):
            goldens.update(render_spec(spec_path, spec, versions))
            print(f"{spec_path}: {len(spec.cases)} cases rendered by the reference")
    for stale in g.golden_files(args.golden):
        if stale.relative_to(args.golden) not in goldens:
            stale.unlink()
            print(f"removed unused golden {stale}")
    for relative, record in sorted(goldens.items()):
        g.write_atomic(args.golden / relative, g.dump(record))
    manifest = {
        "schema_version": g.SCHEMA_VERSION,
        "regenerate": g.REGENERATE,
        "reference": versions,
        "files": {rel.as_posix(): g.file_sha256(args.golden / rel) for rel in sorted(goldens)},
    }
    g.write_atomic(g.manifest_path(args.golden), g.dump(manifest))
    print(f"wrote {len(goldens)} goldens and {g.manifest_path(args.golden)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
