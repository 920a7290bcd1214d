"""Uniqueness rules: a client's boolean expression over contact fields, e.g.
`(last_name AND id_number) OR ssn`, parsed without eval and turned into identity keys."""

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Fields a rule may name; each is a scalar of the contact (or its first email/mobile).
RULE_FIELDS = frozenset({
    "external_id", "first_name", "last_name", "company_name", "date_of_birth", "id_number",
    "passport_number", "ssn", "email", "mobile",
})
MAX_ALTERNATIVES = 16
_TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z_][A-Za-z0-9_]*))")


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    """The rule in disjunctive normal form: a contact is the same as another when all fields of
    any one alternative are equal."""

    text: str
    alternatives: tuple[frozenset[str], ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset().union(*self.alternatives)


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise RuleError(f"unexpected character at position {pos + 1}")
        tokens.append(match.group(match.lastindex))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent: or := and ("OR" and)*; and := atom ("AND" atom)*;
    atom := field | "(" or ")". Each node evaluates to its DNF (a set of field sets)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise RuleError("rule ends too early")
        self.pos += 1
        return token

    def parse(self) -> set[frozenset[str]]:
        dnf = self.or_()
        if self.peek() is not None:
            raise RuleError(f"unexpected {self.peek()!r}")
        return dnf

    def or_(self) -> set[frozenset[str]]:
        dnf = self.and_()
        while (self.peek() or "").upper() == "OR":
            self.take()
            dnf |= self.and_()
        return dnf

    def and_(self) -> set[frozenset[str]]:
        dnf = self.atom()
        while (self.peek() or "").upper() == "AND":
            self.take()
            right = self.atom()
            dnf = {a | b for a in dnf for b in right}
            if len(dnf) > MAX_ALTERNATIVES:
                raise RuleError(f"rule expands to more than {MAX_ALTERNATIVES} alternatives")
        return dnf

    def atom(self) -> set[frozenset[str]]:
        token = self.take()
        if token == "(":
            dnf = self.or_()
            if self.peek() != ")":
                raise RuleError("missing ')'")
            self.take()
            return dnf
        if token == ")" or token.upper() in ("AND", "OR"):
            raise RuleError(f"expected a field name, got {token!r}")
        name = token.lower()
        if name not in RULE_FIELDS:
            raise RuleError(f"unknown field {token!r}; rules may use {sorted(RULE_FIELDS)}")
        return {frozenset({name})}


def parse(text: str) -> Rule:
    if len(text) > 500:
        raise RuleError("rule is longer than 500 characters")
    dnf = _Parser(_tokens(text)).parse()
    # An alternative that contains another adds nothing: (a) OR (a AND b) is just a.
    minimal = {alt for alt in dnf if not any(other < alt for other in dnf)}
    return Rule(text=text.strip(), alternatives=tuple(sorted(minimal, key=sorted)))


def normalise(value: Any) -> str:
    """Equal for values a person would call equal: case, accents' composition, spacing, and the
    punctuation people put in ID numbers."""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return re.sub(r"[\s\-./]+", "", text)


def identity_keys(rule: Rule, values: dict[str, Any], *, digest: Callable[[str], str],
                  scope: str) -> list[str]:
    """One keyed digest per alternative whose fields are all given. Digests, not values, so the
    index holds no personal data and survives nothing after anonymisation."""
    keys = []
    for index, alternative in enumerate(rule.alternatives):
        parts = [values.get(f) for f in sorted(alternative)]
        if any(p is None or p == "" for p in parts):
            continue
        message = "\x1f".join([scope, str(index), *(f"{f}={normalise(v)}" for f, v in
                                                    zip(sorted(alternative), parts))])
        keys.append(digest(message))
    return keys
