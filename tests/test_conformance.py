"""The conformance runner: our cookbook through the JSON-lines protocol conforms on every golden;
broken adapters are reported with per-token diffs; the report opens in a real browser.

The browser test needs Debian's ``chromium`` package (CI installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from cookbook.cli import main
from cookbook.parity import matrix
from cookbook.parity.conformance import run_conformance
from cookbook.parity.golden import golden_files, load_golden
from cookbook.parity.record import unrle

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"
OURS = f"{sys.executable} -m cookbook.parity.adapter"


def command(script: Path) -> str:
    return f"{sys.executable} {script}"


def goldens(renderer: str | None = None) -> list[dict]:
    loaded = [load_golden(path) for path in golden_files(GOLDEN)]
    return [g for g in loaded if renderer is None or g["renderer"]["name"] == renderer]


def wrapped_adapter(tmp_path: Path, body: str) -> str:
    """Our adapter with ``handle`` overridden by ``body`` (a method using ``super()``)."""
    script = tmp_path / "adapter.py"
    script.write_text(
        "import os, sys\n"
        "from cookbook.parity.adapter import Adapter, serve\n\n"
        "class Wrapped(Adapter):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\nout, sys.stdout = sys.stdout, sys.stderr\nserve(sys.stdin, out, Wrapped())\n"
    )
    return command(script)


def test_our_adapter_conforms_on_every_golden() -> None:
    run = run_conformance(OURS, GOLDEN)
    everything = goldens()
    # One item per recorded TrainOnWhat plus the generation item, for every golden.
    assert len(run.items) == sum(len(g["outputs"]["supervised"]) + 1 for g in everything)
    assert run.ok and not run.unsupported, [i.problem for i in run.failed][:3]
    # Declared oracle exclusions are shown where they apply, without turning a pass into a fail.
    page = matrix.html(run)
    assert 'data-status="fail"' not in page
    declared = matrix.declared_exclusions(GOLDEN)
    assert declared and re.search(r'data-status="pass" data-excluded="[1-9]', page)
    assert {item.row for item in run.items} >= {
        "llama3 (meta-llama/Llama-3.1-8B-Instruct)",
        "role_colon (Qwen/Qwen3.5-9B-Base)",
        "role_colon (meta-llama/Llama-3.1-8B)",
        "kimi_k2 (cookbook-standin/kimi-k2, STAND-IN tokenizer)",
        "nemotron3 (cookbook-standin/nemotron-3, STAND-IN tokenizer)",
    }


BROKEN = """\
def handle(self, request):
    response = super().handle(request)
    if request.get("train_on_what") == "all_tokens" and "weights" in response:
        response["weights"][-1] = 0.0  # forgets to train the last token
    return response
"""


def chromium_dom(page: Path, profile: Path) -> str:
    browser = shutil.which("chromium")
    assert browser, "the browser check needs Debian's chromium: apt-get install -y chromium"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_broken_adapter_fails_with_diffs_and_the_report_opens_in_a_browser(
    tmp_path: Path, capsys
) -> None:
    """Every llama3 golden whose all_tokens rendering trains its last token must fail that item
    (and only that item), with the per-token diff at the last position."""
    expected = {}
    for golden in goldens("llama3"):
        record = golden["outputs"]["supervised"].get("all_tokens", {})
        if "ids" in record and unrle(record["weights"])[-1] != 0:
            expected[golden["case_id"]] = (golden["category"], len(record["ids"]) - 1)
    assert len(expected) > 20
    reports = tmp_path / "reports"
    argv = ["--conformance", wrapped_adapter(tmp_path, BROKEN), "--renderer", "llama3"]
    assert main([*argv, "--report-dir", str(reports)]) == 1
    assert "does not conform" in capsys.readouterr().out

    markdown = (reports / "conformance.md").read_text()
    failures = re.findall(r"^### llama3 \(.*?\) · (\w+) · (\w+) · (\w+)$", markdown, re.M)
    assert {case: (category, item) for category, case, item in failures} == {
        case: (category, "all_tokens") for case, (category, _) in expected.items()
    }
    for case, (_, position) in expected.items():
        section = markdown.split(f"· {case} · all_tokens", 1)[1].split("###", 1)[0]
        assert f"first weight divergence at position {position} " in section, section

    dom = chromium_dom(reports / "conformance.html", tmp_path / "profile")
    assert '<table id="parity-matrix">' in dom and 'data-ok="false"' in dom
    cells = re.findall(r'<td class="(\w+)" data-status="\1"', dom)
    failing_categories = {category for category, _ in expected.values()}
    assert cells.count("fail") == len(failing_categories)
    # llama3 has no second oracle: the catalogue says so, and every llama3 cell shows why.
    assert re.search(r'data-excluded="[1-9]\d*"', dom) and "no oracle: The offline Llama" in dom
    assert dom.count("first weight divergence") == len(expected)


CRASHY = """\
def handle(self, request):
    contents = [m.get("content") for m in request.get("messages", [])]
    if request.get("op") == "build_generation_prompt" and "Anything else?" in contents:
        print("boom: cannot render", file=sys.stderr, flush=True)
        os._exit(3)
    return super().handle(request)
"""


def test_a_crashing_adapter_fails_the_item_and_the_run_goes_on(tmp_path: Path) -> None:
    llama3 = goldens("llama3")
    crashes = {
        g["case_id"]
        for g in llama3
        if "Anything else?" in [m["content"] for m in g["input"]["messages"]]
    }
    assert len(crashes) == 1
    run = run_conformance(wrapped_adapter(tmp_path, CRASHY), GOLDEN, {"llama3"}, timeout=60)
    failed = {(item.case_id, item.item): item.problem for item in run.failed}
    assert set(failed) == {(case, "generation") for case in crashes}
    for problem in failed.values():
        assert "adapter failure: exited (code 3) without answering: boom: cannot render" in problem
    assert len(run.items) == sum(len(g["outputs"]["supervised"]) + 1 for g in llama3)


def test_the_documented_minimal_adapter_conforms(tmp_path: Path) -> None:
    """docs/conformance.md's example, verbatim, with its `port` module wired to our cookbook."""
    doc = (ROOT / "docs" / "conformance.md").read_text()
    section = doc.split("## A minimal adapter", 1)[1]
    (tmp_path / "adapter.py").write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    (tmp_path / "port.py").write_text(PORT)
    run = run_conformance(command(tmp_path / "adapter.py"), GOLDEN, {"llama3"})
    assert run.ok and len(run.items) > 100, [i.problem for i in run.failed][:2]


PORT = """\
from cookbook.parity.record import jsonable, with_tool_call_objects
from cookbook.renderers import ToolCall, builtin_renderer_names, get_renderer
from cookbook.tokenizers import TokenizerSource, get_tokenizer

RENDERERS = builtin_renderer_names()


class Port:
    def __init__(self, renderer):
        self.renderer = renderer

    def build_supervised_example(self, messages, train_on_what):
        messages = with_tool_call_objects(messages, ToolCall)
        model_input, weights = self.renderer.build_supervised_example(messages, train_on_what)
        return model_input.to_ints(), weights.tolist()

    def build_generation_prompt(self, messages):
        messages = with_tool_call_objects(messages, ToolCall)
        return self.renderer.build_generation_prompt(messages).to_ints()

    def get_stop_sequences(self):
        return list(self.renderer.get_stop_sequences())

    def parse_response(self, tokens):
        message, termination = self.renderer.parse_response(tokens)
        return jsonable(message), str(termination)


def renderer(name, tokenizer):
    return Port(get_renderer(name, get_tokenizer(tokenizer, TokenizerSource.OFFLINE)))
"""


def test_an_adapter_that_cannot_start_or_answer_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--conformance", str(tmp_path / "missing-adapter")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot start" in err
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nfor line in sys.stdin:\n    print('{}', flush=True)\n")
    assert main(["--conformance", command(silent)]) == 2
    assert "did not answer hello" in capsys.readouterr().err
    mute = tmp_path / "mute.py"
    mute.write_text("import sys\nfor line in sys.stdin:\n    pass\n")
    assert main(["--conformance", command(mute), "--timeout", "0.5"]) == 2
    assert "no answer within 0.5s" in capsys.readouterr().err
