"""Numeric fields given as formulas of other fields, e.g. eta = "0.2 * n_st * m / (sigma_p^2 * d)":
a scaling rule that holds at every grid point (and at every probe value a search will try).

A small safe evaluator, never Python's: numbers, field names, + - * / ^ (power, right
associative, binding tighter than a leading minus) and parentheses. Anything else is a one-line
ConfigError naming the field. config.build evaluates the formulas in dependency order (cycles
refused) and validates each result like a literal value.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Env = Mapping[str, float]
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/^()]))"
)
ALLOWED = "numbers, field names, + - * / ^ and parentheses"


class FormulaError(ValueError):
    """What is wrong with a formula, in a few words (config/settings.py adds the field)."""


@dataclass(frozen=True)
class Formula:
    """A parsed formula: its text, the field names it reads, and evaluate(env) -> float."""

    text: str
    names: frozenset[str]
    evaluate: Callable[[Env], float]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match:
            raise FormulaError(f"unexpected {text[pos:].strip()[0]!r}; allowed: {ALLOWED}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse(text: str, numeric: Callable[[str], bool]) -> Formula:
    """Parse `text`; `numeric(name)` says which names are fields a formula may read."""
    tokens, names = _tokens(text), set()
    at = 0

    def peek() -> str | None:
        return tokens[at][1] if at < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal at
        if at >= len(tokens):
            raise FormulaError(f"ends too early; allowed: {ALLOWED}")
        at += 1
        return tokens[at - 1]

    def binary(operand: Callable, ops: str) -> Callable:
        def parse_level() -> Callable[[Env], float]:
            left = operand()
            while peek() is not None and peek() in ops and tokens[at][0] == "op":
                op, right = take()[1], operand()
                left = _apply(op, left, right)
            return left

        return parse_level

    def unary() -> Callable[[Env], float]:
        if peek() in ("-", "+") and tokens[at][0] == "op":
            sign = -1.0 if take()[1] == "-" else 1.0
            inner = unary()
            return lambda env: sign * inner(env)
        return power()

    def power() -> Callable[[Env], float]:
        base = atom()
        if peek() == "^":
            take()
            return _apply("^", base, unary())
        return base

    def atom() -> Callable[[Env], float]:
        kind, value = take()
        if kind == "number":
            number = float(value)
            return lambda env: number
        if kind == "name":
            if not numeric(value):
                raise FormulaError(f"{value!r} is not a numeric setting field")
            names.add(value)
            return lambda env: float(env[value])
        if value == "(":
            inner = expr()
            if take()[1] != ")":
                raise FormulaError("a '(' is not closed")
            return inner
        raise FormulaError(f"unexpected {value!r}; allowed: {ALLOWED}")

    expr = binary(binary(unary, "*/"), "+-")
    if not tokens:
        raise FormulaError(f"is empty; allowed: {ALLOWED}")
    evaluate = expr()
    if at < len(tokens):
        raise FormulaError(f"unexpected {tokens[at][1]!r}; allowed: {ALLOWED}")
    return Formula(text, frozenset(names), evaluate)


OPERATORS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "^": operator.pow,
}


def _apply(op: str, left: Callable, right: Callable) -> Callable[[Env], float]:
    def run(env: Env) -> float:
        a, b = left(env), right(env)
        try:
            value = OPERATORS[op](a, b)
        except (ZeroDivisionError, OverflowError) as err:
            raise FormulaError(f"cannot be evaluated ({err})") from None
        if isinstance(value, complex) or not math.isfinite(value):
            raise FormulaError(f"cannot be evaluated ({a:g} {op} {b:g})")
        return value

    return run
