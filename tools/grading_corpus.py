"""The inputs of golden/rl/grading.json: hand-picked odd answers plus seeded random combinations.

Only tools/generate_grading_goldens.py uses this; the inputs it builds are stored in the golden
(tests read them from there), so changing this file changes nothing until goldens are regenerated.
Random values stay small and sympy-friendly: every case must grade well inside the reference's
one-second timeout, or the safe_grade column would depend on the machine.
"""

from __future__ import annotations

import random
from fractions import Fraction

# Answers as a model or a dataset writes them: the odd corners of both normalisers.
ODD_ANSWERS = [
    *["", " ", "\n", "\t", "0", "42", "-7", "\u22127", "\u2212 7", "+5", "007", "-0", "+0"],
    *["1,000", "1,000,000", "12,34", "1,2,3", "1, 2, 3", "2,3", "1 000", "10,\\!000", "1\\!000"],
    *["3.14", ".5", "0.5", "-.5", "-0.5", "5.0", "5.", "5.00", "0.0", "1e3", "1E3", "1e400"],
    *["3.0000000001", "1.00000001", "0.333", "0.3333333333", "inf", "-inf", "nan", "NaN"],
    *["1/2", "01/2", "-1/2", "1/-2", "3/4", "1/0", "2/4", "1/2/3", "1 / 2", "1_000", "1_0/2"],
    *["\\frac12", "\\frac{1}{2}", "\\dfrac{3}{4}", "\\tfrac{3}{4}", "\\frac1{72}", "\\frac{72}1"],
    *[
        "\\frac",
        "\\frac1",
        "\\frac 12",
        "\\frac{a}{b}",
        "-\\frac{1}{2}",
        "\\frac{-1}{2}",
        "\\frac ab",
    ],
    *["2\\frac{1}{2}", "7 3/4", "-7 3/4", "\\frac{2}{4}", "\\frac{10}{20}", "\\frac{1}{3}"],
    *["\\sqrt2", "\\sqrt{2}", "2\\sqrt{3}", "\\sqrt", "\\sqrt{}", "\\sqrt[3]{8}", "\\sqrt2\\sqrt3"],
    *["\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}2", "\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"],
    *["\\pi", "2\\pi", "\\frac{\\pi}{2}", "\\pi/2", "3.14159", "\\infty", "-\\infty", "\u221e"],
    *["(1, 2)", "(1,2)", "[1, 2]", "(1, 2]", "[-\\infty, 3)", "(-\\infty, 3) \\cup (4, \\infty)"],
    *["\\{1, 2\\}", "(1, (2, 3))", "()", "(1)", "[]", "(,)", "(1,)", "\\left( 1, 2 \\right)"],
    *["\\left[ 0, 1 \\right)", "(0,1)", "[0,1]", "(a, b)", "(1,000, 2)", "(1,000,2)"],
    *["x = 5", "k=3", "xy=4", "xyz = 5", "y = 2x + 1", "a=b=c", "x=", "=5", "x \\in [1, 2]"],
    *["\\text{yes}", "\\text{ yes }", "\\text{(A)}", "\\text{}", "\\text{a}\\text{b}", "yes"],
    *["5 \\text{ cm}", "5\\text{ cm}", "5 \\text{ cm} \\text{ m}", "5\\text{cm}", "10 cm"],
    *["10 centimeters", "3 feet", "3 foot", "2 inches", "5 meters^2", "4 cm^2", "6 hours"],
    *["7 days", "2 weeks", "1 year", "5 miles", "3 yards", "12 seconds", "90 minutes"],
    *["90^\\circ", "90^{\\circ}", "90 ^ \\circ", "90 degrees", "90\u00b0", "45 degree"],
    *["50\\%", "50%", "\\%", "%", "50 \\%", "0.5\\%", "\\$5", "$5$", "\\$1,000", "\\$", "5\\$"],
    *["\\$1,000.50", "5 million", "2 billion", "3 trillion", "1.5 million", "1 or 2", "1 and 2"],
    *["x^2", "x^{2}", "x^2^3", "2^10", "2^{10}", "2^(10)", "e^{i\\pi}", "x**2", "2**3"],
    *["\\mathbf{A}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "i", "2i", "3+4i", "1\\\\2"],
    *["a\nb", "  12  ", "1\t2", "\u00bd", "\u0663", "\uff15", "\u00b2", "12:30", "1:2", "2:1"],
    *["{5}", "{{5}}", "}5{", "5}", "{5", "{}", "{", "}", "\\boxed{5}", "\\boxed 5", "$"],
    *["\\log_2 8", "\\sin x", "\\cos(\\pi)", "\\ln e", "|x|", "\\lfloor 2.5 \\rfloor"],
    *["A", "B", "(A)", "\\textbf{(B)}", "Yes", "YES", "x", "X", "abc", "Monday", "\\text{Monday}"],
    *["\\!", "\\\\", "\\left", "\\right", "0.5.", "..5", "1..2", "--5", "-(-5)", "+-5"],
    *["\\frac{1}{2}x", "x\\frac{1}{2}", "\\frac{x+1}{2}", "\\frac{1}{x}", "\\frac{\\frac12}{3}"],
    *["1.5 \\times 10^3", "1.5\\cdot 10^3", "3 \\cdot 4", "3 \\times 4", "3\u00b74", "3\u00d74"],
    *["A \\cup B", "\\emptyset", "\\varnothing", "\\mathbb{R}", "\\pm 2", "\\pm\\sqrt{2}"],
]

# Whole responses: what extract_boxed, the GSM8K parser and the arithmetic parser see.
ODD_RESPONSES = [
    *["The answer is \\boxed{42}", "\\boxed{1} then \\boxed{2}", "\\boxed{\\frac{1}{2}}"],
    *["\\boxed{}", "\\boxed 7", "\\boxed  x1 y", "\\boxed{1", "\\boxed{1}}", "}\\boxed{1}"],
    *["\\boxed{\\boxed{3}}", "\\boxed{a{b}c}", "\\fbox{3}", "no answer here", "\\boxed", ""],
    *[
        "\\boxed{\u22125}",
        "\\boxed{5}\n\nUser:",
        "\\boxed{x^2 + 1}",
        "\\boxed{\\sqrt{\\frac{3}{4}}}",
    ],
    *[
        "\\boxed{{5}}",
        "{\\boxed{5}}",
        "\\boxed {5}",
        "\\boxed\n{5}",
        "\\boxed{5} {",
        "\\boxed{5} }",
    ],
    *["\\\\boxed{5}", "\\boxedd{5}", "boxed{5}", "\\boxed{1}\\boxed{2}\\boxed{}", "\\boxed-3"],
    *["\\boxed{\\text{yes}}", "**\\boxed{12}**", "$\\boxed{12}$", "\\[\\boxed{12}\\]"],
    *["64 + 67 = **131**", "64 + 60 = 124, then 124 + 7 = 131. The answer is 131.", "91"],
    *["no numeric answer", "1,234", "-5 and 7", "3-4", "x-1", "1.5", "-0", "12,34,567"],
    *["#### 42", "Some reasoning.\n#### 42", "Calculation.\n#### 1,234", "####: 55", "####"],
    *["#### 10\nMore reasoning.\n#### 20", "The total is #### 99 dollars.", "#### ", "####\n"],
    *["  #### 5  ", "#### -3", "#### $18", "#### 1,000,000", "####:", "#####5", "a ####b ####c"],
    *["#### 5\n#### ", "x\n  ####  7.50 \ny", "#### \u22124", "#### 1/2", "\n\n####\t8"],
]

INT_FORMS = [
    "{n}",
    "{n:,}",
    "{n}.0",
    "{n}.00",
    "\\${n}",
    "{n}\\%",
    "{n}%",
    "{n} cm",
    "\\text{{{n}}}",
    "{n}^\\circ",
    "x = {n}",
    "{{{n}}}",
    " {n} ",
    "{n} dollars",
    "{n}\\text{{ cm}}",
    "{u}",
    "\\boxed{{{n}}}",
    "{n} meters",
    "{n} \\text{{ apples}}",
    "{n}.5",
    "{m}",
    "-{n}",
]
FRACTION_FORMS = [
    "\\frac{{{p}}}{{{q}}}",
    "\\dfrac{{{p}}}{{{q}}}",
    "\\tfrac{{{p}}}{{{q}}}",
    "{p}/{q}",
    "{dec}",
    "{dec3}",
    "\\frac{{{p2}}}{{{q2}}}",
    "{p2}/{q2}",
    "-\\frac{{{p}}}{{{q}}}",
    "\\frac{{-{p}}}{{{q}}}",
    "{mixed}",
    "{latex_mixed}",
    "({p})/({q})",
    "{p} / {q}",
]
SURD_FORMS = [
    "{a}\\sqrt{{{b}}}",
    "{a}\\sqrt{b}",
    "\\sqrt{{{ab}}}",
    "{a}*sqrt({b})",
    "{a} \\sqrt {{{b}}}",
    "\\frac{{{a}\\sqrt{{{b}}}}}{{1}}",
    "{a}\\sqrt{{{b}}}+0",
    "{a2}\\sqrt{{{b}}}",
]
PI_FORMS = [
    "{a}\\pi",
    "\\frac{{{a}\\pi}}{{{b}}}",
    "{a}pi",
    "\\pi {a}",
    "\\frac{{{a}}}{{{b}}}\\pi",
    "{a}\\pi/{b}",
    "{approx}",
    "{a} \\pi",
    "\\dfrac{{{a}\\pi}}{{{b}}}",
]
TUPLE_FORMS = [
    "({x}, {y})",
    "({x},{y})",
    "\\left({x}, {y}\\right)",
    "[{x}, {y}]",
    "({y}, {x})",
    "({x}, {y}]",
    "[{x}, {y})",
    "({x}, {y}, {z})",
    "{x}, {y}",
    "(-\\infty, {x})",
    "({x}, \\infty)",
    "\\{{{x}, {y}\\}}",
    "({x} ,{y})",
    "({xs}, {y})",
]
TEXT_FORMS = [
    "{w}",
    "{W}",
    "\\text{{{w}}}",
    "\\text{{ {w} }}",
    "\\textbf{{{w}}}",
    "({l})",
    "{l}",
    "\\text{{({l})}}",
    "{w}s",
    "{L}",
]
WORDS = ["monday", "red", "yes", "no", "even", "odd", "triangle", "north", "alice", "bob"]


def _render(forms: list[str], values: dict[str, object], rng: random.Random) -> str:
    return rng.choice(forms).format(**values)


def _int_values(rng: random.Random) -> dict[str, object]:
    n = rng.choice([rng.randint(0, 20), rng.randint(0, 2000), rng.randint(1000, 2_000_000)])
    m = n + rng.choice([-1, 1, 10, 1000])
    return {"n": n, "m": m, "u": f"\u2212{n}"}


def _fraction_values(rng: random.Random) -> dict[str, object]:
    q = rng.randint(2, 12)
    p = rng.randint(1, 3 * q)
    frac = Fraction(p, q)
    whole, rest = divmod(frac.numerator, frac.denominator)
    mixed = f"{whole} {rest}/{frac.denominator}" if whole and rest else str(frac)
    latex_mixed = (
        f"{whole}\\frac{{{rest}}}{{{frac.denominator}}}" if whole and rest else f"{float(frac)}"
    )
    k = rng.randint(2, 4)
    return {
        "p": p,
        "q": q,
        "p2": p * k,
        "q2": q * k,
        "dec": round(p / q, rng.choice([1, 2, 6])),
        "dec3": f"{p / q:.3f}",
        "mixed": mixed,
        "latex_mixed": latex_mixed,
    }


def _surd_values(rng: random.Random) -> dict[str, object]:
    a, b = rng.randint(1, 6), rng.choice([2, 3, 5, 6, 7])
    return {"a": a, "b": b, "ab": a * a * b, "a2": a + 1}


def _pi_values(rng: random.Random) -> dict[str, object]:
    a, b = rng.randint(1, 9), rng.randint(2, 6)
    return {"a": a, "b": b, "approx": round(a * 3.14159265 / b, rng.choice([2, 5]))}


def _tuple_values(rng: random.Random) -> dict[str, object]:
    x, y, z = (rng.randint(-9, 9) for _ in range(3))
    return {"x": x, "y": y, "z": z, "xs": f"{x * 1000:,}"}


def _text_values(rng: random.Random) -> dict[str, object]:
    w = rng.choice(WORDS)
    letter = rng.choice("ABCDE")
    return {"w": w, "W": w.capitalize(), "l": letter, "L": letter.lower()}


KINDS = [
    ("int", INT_FORMS, _int_values),
    ("fraction", FRACTION_FORMS, _fraction_values),
    ("surd", SURD_FORMS, _surd_values),
    ("pi", PI_FORMS, _pi_values),
    ("tuple", TUPLE_FORMS, _tuple_values),
    ("text", TEXT_FORMS, _text_values),
]


def random_pairs(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    """(kind, given, ground_truth): two surface forms of one value, or of two nearby values."""
    pairs = []
    for _ in range(count):
        kind, forms, values = rng.choice(KINDS)
        truth_values = values(rng)
        given_values = truth_values if rng.random() < 0.75 else values(rng)
        pairs.append((kind, _render(forms, given_values, rng), _render(forms, truth_values, rng)))
    return pairs


def random_responses(rng: random.Random, answers: list[str], count: int) -> list[str]:
    """Answers wrapped the ways models wrap them: boxes (nested, several, unbalanced), prose,
    GSM8K's ``####`` line."""
    wrappers = [
        "The answer is \\boxed{{{a}}}.",
        "\\boxed{{{a}}}",
        "So $\\boxed{{{a}}}$",
        "#### {a}",
        "Work.\n#### {a}",
        "\\boxed{{{a}}} and \\boxed{{{b}}}",
        "\\boxed{{\\boxed{{{a}}}}}",
        "\\boxed{{{a}",
        "{a}}} \\boxed{{{b}}}",
        "{a} = {b}",
        "\\boxed {a}",
        "{a}\n\nUser:",
    ]
    return [
        rng.choice(wrappers).format(a=rng.choice(answers), b=rng.choice(answers))
        for _ in range(count)
    ]


# (given, ground_truth) pairs whose verdict is worth pinning by hand.
ODD_PAIRS = [
    *[("\\frac{1}{2}", "0.5"), ("\\frac{3}{4}", "0.75"), ("5.0", "5"), ("5.1", "5"), ("5", "5.0")],
    *[("\\frac{2}{4}", "\\frac{1}{2}"), ("(1, 2)", "(1, 2)"), ("(1, 2)", "(2, 1)"), ("yes", "no")],
    *[("\\text{yes}", "yes"), ("\u22125", "-5"), ("-5", "\u22125"), ("1,000", "1000")],
    *[("1000", "1,000"), ("1 000", "1000"), ("10%", "10"), ("10\\%", "10"), ("\\$10", "10")],
    *[("10 dollars", "10"), ("90^\\circ", "90"), ("90 degrees", "90"), ("\\sqrt{2}/2", "0.7071")],
    *[("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"), ("\\pi", "3.14159"), ("2\\pi", "\\pi*2")],
    *[("(1,2]", "(1,2)"), ("[1,2]", "(1,2)"), ("x=5", "5"), ("5", "x=5"), ("y = 5", "5")],
    *[("\\dfrac{1}{2}", "\\frac12"), ("1/2", "\\frac{1}{2}"), ("2/4", "1/2"), ("0.50", "0.5")],
    *[("\\frac{1}{3}", "0.333"), ("0.333", "\\frac{1}{3}"), ("0.3333333333", "\\frac{1}{3}")],
    *[("1e3", "1000"), ("5 million", "5000000"), ("5000000", "5 million"), ("7 3/4", "31/4")],
    *[("7 3/4", "\\frac{31}{4}"), ("7\\frac{3}{4}", "7.75"), ("x^2+2x+1", "(x+1)^2")],
    *[("(x+1)^2", "x^2+2x+1"), ("A", "(A)"), ("a", "A"), ("", "5"), ("5", ""), ("", "")],
    *[(" ", " "), ("\\infty", "inf"), ("-\\infty", "-inf"), ("\\infty", "\\infty")],
    *[("1,234", "1234"), ("1,234.5", "1234.5"), ("12,34", "1234"), ("(1,000, 2)", "(1000, 2)")],
    *[("3", "3.0000000001"), ("3.0000000001", "3"), ("3.00000001", "3"), ("0.1+0.2", "0.3")],
    *[("\\frac{1}{2}", "1/2"), ("-\\frac{1}{2}", "\\frac{-1}{2}"), ("-1/2", "\\frac{-1}{2}")],
    *[("01/2", "1/2"), ("\\frac12", "0.5"), ("0.5", "\\frac12"), (".5", "0.5"), ("1/0", "1/0")],
    *[("2\\sqrt{3}", "\\sqrt{12}"), ("\\sqrt{12}", "2\\sqrt{3}"), ("\\sqrt3", "\\sqrt{3}")],
    *[("x^2^3", "x^6"), ("2^10", "1024"), ("2^{10}", "1024"), ("1024", "2^{10}")],
    *[("5 \\text{ cm}", "5"), ("5\\text{ cm}", "5"), ("5 cm", "5"), ("5cm^2", "5")],
    *[("\\$1,000.50", "1000.5"), ("1000.50", "\\$1,000.50"), ("50\\%", "0.5"), ("0.5", "50\\%")],
    *[("1 or 2", "1, 2"), ("1 and 2", "1,2"), ("(1, 2)", "1, 2"), ("[1, 2)", "[1, 2)")],
    *[("(-\\infty, 3)", "(-inf, 3)"), ("\\{1, 2\\}", "{1, 2}"), ("(1, (2, 3))", "(1, (2, 3))")],
    *[("3+4i", "4i+3"), ("i", "I"), ("\\text{(A)}", "A"), ("\\textbf{(B)}", "B"), ("B", "b")],
    *[("Monday", "\\text{Monday}"), ("monday", "Monday"), ("\\text{ yes }", "yes")],
    *[("\\frac{\\pi}{2}", "\\pi/2"), ("\\pi/2", "1.5708"), ("90", "\\frac{\\pi}{2}")],
    *[("1.5 \\times 10^3", "1500"), ("3 \\cdot 4", "12"), ("3\u00d74", "12"), ("12", "3 * 4")],
    *[("\\frac{10}{20}", "\\frac{1}{2}"), ("\\frac{1}{2}", "\\frac{10}{20}"), ("-0", "0")],
    *[("+5", "5"), ("007", "7"), ("7", "007"), ("\u00bd", "1/2"), ("\u0663", "3"), ("\uff15", "5")],
    *[("\\frac{x+1}{2}", "(x+1)/2"), ("\\frac{1}{x}", "1/x"), ("abc", "cba"), ("xyz", "xyz")],
    *[("a+b+c", "c+b+a"), ("a+b+c+d", "d+c+b+a"), ("\\sqrt[3]{8}", "2"), ("\\log_2 8", "3")],
    *[("\\boxed{5}", "5"), ("{5}", "5"), ("{{5}}", "5"), ("5}", "5"), ("}5{", "5")],
    *[("12:30", "12:30"), ("1:2", "1/2"), ("\\pm 2", "\\pm2"), ("\\emptyset", "\\varnothing")],
    *[("1e400", "1e400"), ("inf", "1e400"), ("nan", "nan"), ("NaN", "nan"), ("1_000", "1000")],
]
