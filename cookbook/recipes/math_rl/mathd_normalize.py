"""The MATH dataset's answer normaliser (``normalize_answer``, "mathd"): string surgery on
LaTeX, the first of the two normalisers :mod:`.math_grading` runs (the reference keeps it in
``math_grading``, where it stays importable). Quirks are the reference's, kept on purpose.
"""

from __future__ import annotations

import re

TEXT_WRAPPER = re.compile(r"^\\text\{(?P<text>.+?)\}$")
"""``\\text{...}`` around a whole answer, which both normalisers unwrap."""


def normalize_answer(answer: str | None) -> str | None:
    """The mathd normal form; an input the normaliser cannot handle comes back only stripped
    (and unwrapped from ``\\text{}``), as in the reference."""
    if answer is None:
        return None
    answer = answer.strip()
    try:
        m = TEXT_WRAPPER.search(answer)
        if m is not None:
            answer = m.group("text").strip()
        return _strip_string(str(answer))
    except Exception:
        return answer


def _fix_fracs(string: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1b`` -> ``\\frac{1}{b}``; a ``\\frac`` followed by
    a single character leaves the whole string as it was, one followed by nothing raises."""
    pieces = string.split("\\frac")
    out = pieces[0]
    for piece in pieces[1:]:
        out += "\\frac"
        if piece[0] == "{":
            out += piece
            continue
        if len(piece) < 2:
            return string
        numerator, second, rest = piece[0], piece[1], piece[2:]
        if second != "{":
            out += "{" + numerator + "}{" + second + "}" + rest
        else:
            out += "{" + numerator + "}" + second + rest
    return out


def _fix_a_slash_b(string: str) -> str:
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return string
    if string != f"{a}/{b}":
        # The reference asserts here (outside its try), so normalize_answer gives up.
        raise ValueError(f"{string!r} is not a canonical a/b")
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(string: str) -> str:
    if "\\text{ " not in string:
        return string
    splits = string.split("\\text{ ")
    if len(splits) != 2:
        raise ValueError("more than one unit")  # an assert in the reference
    return splits[0]


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    out = splits[0]
    for split in splits[1:]:
        if split and split[0] == "{":
            out += "\\sqrt" + split
        else:
            out += "\\sqrt{" + split[:1] + "}" + split[1:]
    return out


_STRIP_REPLACEMENTS = (
    ("\n", ""),
    ("\\!", ""),
    ("\\\\", "\\"),
    ("tfrac", "frac"),
    ("dfrac", "frac"),
    ("\\left", ""),
    ("\\right", ""),
    ("^{\\circ}", ""),
    ("^\\circ", ""),
    ("\\$", ""),
)


def _strip_string(string: str) -> str:
    for old, new in _STRIP_REPLACEMENTS:
        string = string.replace(old, new)
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    # "k = 5" -> "5" when what stands left of a single "=" is at most two characters.
    sides = string.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        string = sides[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)
