"""Answer grading for the math RL environments: the reward, so it must match the reference.

Port of ``tinker_cookbook.recipes.math_rl.math_grading`` (0.5.8). Two normalisers run in turn:
the MATH dataset's ``normalize_answer`` (:mod:`.mathd_normalize`: string surgery on LaTeX) and a
looser ``_normalize`` (units, words, pylatexenc's LaTeX-to-text), then a per-element sympy
comparison. Every quirk is kept on purpose, because a reward that differs from the reference on
odd input trains a different policy: e.g. ``0.5`` equals ``\\frac{1}{2}`` but ``0.25`` needs
sympy, an integer ground truth refuses sympy, unreduced fractions never match, and an input that
trips one of the reference's ``assert``s comes back from ``normalize_answer`` un-normalised. The
corpus in ``golden/rl/grading.json`` (``tools/generate_grading_goldens.py``) pins all of it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import Any, TypeVar

import sympy
from pylatexenc import latex2text
from sympy.parsing import sympy_parser

from cookbook.recipes.math_rl.mathd_normalize import TEXT_WRAPPER, normalize_answer

logger = logging.getLogger(__name__)

T = TypeVar("T")

# ----------------------------------------------------------------------------------------------
# \boxed{} extraction
# ----------------------------------------------------------------------------------------------


def extract_boxed(text: str) -> str:
    """The content of the last-closed ``\\boxed{...}``; else ``\\boxed 2`` without braces.

    Raises ValueError on an unmatched ``}`` anywhere (even before a valid box) and when
    there is no box."""
    boxed: list[str] = []
    opens: list[int] = []
    for i, char in enumerate(text):
        if char == "{":
            opens.append(i)
        elif char == "}":
            if not opens:
                raise ValueError("Unmatched }")
            start = opens.pop()
            if text.endswith("\\boxed", 0, start):
                boxed.append(text[start + 1 : i])
    if boxed:
        return boxed[-1]
    match = re.search(r"\\boxed\s+([a-zA-Z0-9]+)", text)
    if match:
        return match.group(1)
    raise ValueError("No boxed strings found")


# ----------------------------------------------------------------------------------------------
# The sympy grader
# ----------------------------------------------------------------------------------------------

# sympy might hang on these; the reference does not try to be lenient with them.
BAD_SUBSTRINGS = ["^{", "^("]
BAD_REGEXES = [r"\^[0-9]+\^", r"\^[0-9][0-9]+"]
TUPLE_CHARS = "()[]"

_UNITS = [
    *["degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week"],
    *["month", "year", "foot", "feet", "inch", "yard"],
]
_LATEX_TEXT_SYMBOLS = (
    ("\u221a", "sqrt"),
    ("\u03c0", "pi"),
    ("\u221e", "inf"),
    ("\u222a", "U"),
    ("\u00b7", "*"),
    ("\u00d7", "*"),
)


def _sympy_parse(expr: str) -> Any:
    return sympy_parser.parse_expr(
        expr.replace("^", "**"),
        transformations=(
            *sympy_parser.standard_transformations,
            sympy_parser.implicit_multiplication_application,
        ),
    )


def _parse_latex(expr: str) -> str:
    """LaTeX to sympy-readable text through pylatexenc (a space before ``\\frac`` keeps mixed
    numbers apart)."""
    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    expr = expr.replace("\\frac", " \\frac")
    expr = latex2text.LatexNodes2Text().latex_to_text(expr)
    for symbol, name in _LATEX_TEXT_SYMBOLS:
        expr = expr.replace(symbol, name)
    return expr.strip()


def _is_float(num: str) -> bool:
    try:
        float(num)
    except (ValueError, OverflowError):
        return False
    return True


def _is_int(x: float) -> bool:
    try:
        return abs(x - round(x)) <= 1e-7
    except (ValueError, OverflowError):
        return False


def _is_frac(expr: str) -> bool:
    return bool(re.search(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$", expr))


def _str_is_int(x_str: str) -> bool:
    try:
        return _is_int(float(_strip_properly_formatted_commas(x_str)))
    except ValueError:
        return False


def _str_to_int(x_str: str) -> int:
    return int(float(x_str.replace(",", "")))


def _inject_implicit_mixed_number(step: str) -> str:
    """``7 3/4`` -> ``7+3/4`` (then sympy can evaluate a mixed number)."""
    return re.sub("([0-9]) +([0-9])", "\\1+\\2", step)


def _strip_properly_formatted_commas(expr: str) -> str:
    """Thousands separators only (``1,000,000``), never the commas of a tuple."""
    pattern = re.compile(r"(\d)(,)(\d\d\d)($|\D)")
    while True:
        stripped = pattern.sub("\\1\\3\\4", expr)
        if stripped == expr:
            return stripped
        expr = stripped


def _normalize(expr: str | None) -> str | None:
    """The looser normal form: no units, words for powers of ten, LaTeX as text, lower case."""
    if expr is None:
        return None
    m = TEXT_WRAPPER.search(expr)
    if m is not None:
        expr = m.group("text")
    for old, new in (("\\%", "%"), ("\\$", "$"), ("$", ""), ("%", "")):
        expr = expr.replace(old, new)
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    for word, power in (("million", "*10^6"), ("billion", "*10^9"), ("trillion", "*10^12")):
        expr = expr.replace(word, power)
    for unit in _UNITS:
        expr = re.sub(rf"{unit}(es)?(s)? *(\^[0-9]+)?", "", expr)
    expr = re.sub(r"\^ *\\circ", "", expr)
    if expr and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = re.sub(r",\\! *", "", expr)
    if _is_float(expr) and _is_int(float(expr)):
        expr = str(round(float(expr)))
    if "\\" in expr:
        with contextlib.suppress(Exception):
            expr = _parse_latex(expr)
    expr = re.sub("- *", "-", expr)  # mixed numbers with a minus sign
    expr = _inject_implicit_mixed_number(expr)
    expr = expr.replace(" ", "").replace("{", "").replace("}", "").lower()
    if _str_is_int(expr):
        expr = str(_str_to_int(expr))
    return expr


def count_unknown_letters_in_expr(expr: str) -> int:
    expr = expr.replace("sqrt", "").replace("frac", "")
    return len({x for x in expr if x.isalpha()})


def should_allow_eval(expr: str) -> bool:
    """Refuse text and functions of more than two variables, and what might hang sympy."""
    if count_unknown_letters_in_expr(expr) > 2:
        return False
    if any(bad in expr for bad in BAD_SUBSTRINGS):
        return False
    return all(re.search(bad, expr) is None for bad in BAD_REGEXES)


def are_equal_under_sympy(ground_truth_normalized: str, given_normalized: str) -> bool:
    try:
        expr = f"({ground_truth_normalized})-({given_normalized})"
        if should_allow_eval(expr):
            return bool(sympy.simplify(_sympy_parse(expr)) == 0)
    except Exception:
        pass
    return False


def split_tuple(expr: str) -> list[str]:
    """The elements of a tuple or interval; a bracketed string with no inner brackets only."""
    expr = _strip_properly_formatted_commas(expr)
    if not expr:
        return []
    if (
        len(expr) > 2
        and expr[0] in TUPLE_CHARS
        and expr[-1] in TUPLE_CHARS
        and all(ch not in expr[1:-1] for ch in TUPLE_CHARS)
    ):
        return [elem.strip() for elem in expr[1:-1].split(",")]
    return [expr]


def _elements_match(ground_truth_elem: str, given_elem: str) -> bool:
    if _is_frac(ground_truth_elem) and _is_frac(given_elem):
        return ground_truth_elem == given_elem  # unreduced fractions must not pass
    if _str_is_int(ground_truth_elem) != _str_is_int(given_elem):
        return False  # an integer answer needs a strict match, never sympy
    return are_equal_under_sympy(ground_truth_elem, given_elem)


def grade_answer(given_answer: str, ground_truth: str) -> bool:
    """Correct when both normalise to the same string (either normaliser), or when, element by
    element, sympy simplifies their difference to 0."""
    if given_answer is None:
        return False
    if normalize_answer(ground_truth) == normalize_answer(given_answer):
        return True
    truth = _normalize(ground_truth)
    given = _normalize(given_answer)
    if truth is None or given is None:
        return False
    if truth == given:
        return True
    if not given:
        return False
    truth_elems = split_tuple(truth)
    given_elems = split_tuple(given)
    if not truth_elems or len(truth_elems) != len(given_elems):
        return False
    # Tuples and intervals must agree on their brackets: (a, b] is not [a, b].
    if len(truth_elems) > 1 and (truth[0] != given[0] or truth[-1] != given[-1]):
        return False
    return all(_elements_match(t, g) for t, g in zip(truth_elems, given_elems, strict=True))


def grade_answer_math_verify(given_answer: str, ground_truth: str) -> bool:
    """math-verify's verdict; both sides are wrapped in ``$...$`` unless either end has one."""
    from math_verify import parse, verify

    if not given_answer.startswith("$") and not given_answer.endswith("$"):
        given_answer = f"${given_answer}$"
    if not ground_truth.startswith("$") and not ground_truth.endswith("$"):
        ground_truth = f"${ground_truth}$"
    return verify(parse(given_answer), parse(ground_truth))


# ----------------------------------------------------------------------------------------------
# Timeout
# ----------------------------------------------------------------------------------------------


def run_with_timeout_signal(
    func: Callable[..., T],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    timeout_seconds: int = 5,
) -> T | None:
    """``func(*args, **kwargs)`` in a worker thread; None when it times out or raises.

    As in the reference, leaving the executor waits for the worker, so a slow call still blocks
    for its full duration and only its result is dropped. And because the call runs off the
    main thread, math-verify's signal-based timeout raises: through this wrapper the
    ``math_verify`` grader always yields None (the reference's safe_grade then says False)."""
    kwargs = kwargs or {}
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(func, *args, **kwargs)
        try:
            return future.result(timeout=timeout_seconds)
        except FuturesTimeoutError:
            logger.warning(f"Function timed out after {timeout_seconds} seconds.")
        except Exception as e:
            logger.warning(f"Function raised an exception: {e}")
    return None
