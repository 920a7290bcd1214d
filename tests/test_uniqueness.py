"""Unit tests of the pure parts of the contact registry: rule parsing, identity keys, CSV."""

import pytest

from contacts import csv_import
from contacts.uniqueness import RuleError, identity_keys, parse


def digest(message: str) -> str:
    return message  # the message itself shows what the key is made of


def test_rule_becomes_alternatives():
    rule = parse("(last_name AND id_number) OR ssn")
    assert rule.alternatives == (frozenset({"id_number", "last_name"}), frozenset({"ssn"}))
    assert rule.fields == {"last_name", "id_number", "ssn"}
    distributed = parse("last_name and (id_number or passport_number)")
    assert set(distributed.alternatives) == {frozenset({"last_name", "id_number"}),
                                             frozenset({"last_name", "passport_number"})}
    assert parse("ssn OR (ssn AND last_name)").alternatives == (frozenset({"ssn"}),)


@pytest.mark.parametrize("text, message", [
    ("last_name AND", "ends too early"),
    ("(last_name OR ssn", "missing ')'"),
    ("last_name ssn", "unexpected 'ssn'"),
    ("__import__('os')", "unexpected character"),
    ("password", "unknown field"),
    ("OR ssn", "expected a field name"),
])
def test_bad_rules_are_refused_with_a_reason(text, message):
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_identity_keys_ignore_case_spacing_and_punctuation():
    rule = parse("(last_name AND id_number) OR ssn")
    a = identity_keys(rule, {"last_name": "de Vries", "id_number": "AB-12 34"}, digest=digest,
                      scope="c:person")
    b = identity_keys(rule, {"last_name": "DE VRIES ", "id_number": "ab1234", "ssn": None},
                      digest=digest, scope="c:person")
    assert a == b and len(a) == 1
    assert len(identity_keys(rule, {"last_name": "x", "id_number": "1", "ssn": "9"},
                             digest=digest, scope="c:person")) == 2


def test_csv_batches_are_byte_ranges_with_line_numbers():
    content = ("\ufeffexternal_id;first_name\r\n" + "a;\"multi\nline\"\r\n\r\n"
               + "".join(f"x{i};n{i}\r\n" for i in range(5))).encode()
    delimiter, columns, batches, total = csv_import.plan(content, 2)
    assert (delimiter, columns, total) == (";", ["external_id", "first_name"], 6)
    assert [(b.first_line, b.rows) for b in batches] == [(2, 2), (6, 2), (8, 2)]
    rows = [(r.line, r.cells) for b in batches for r in csv_import.records(
        content[b.start:b.end], start=0, end=None, first_line=b.first_line, delimiter=";",
        width=2)]
    assert rows[0] == (2, ["a", "multi\nline"]) and rows[1] == (5, ["x0", "n0"])
    assert rows[-1] == (9, ["x4", "n4"])
    # Blank lines where a batch begins: its rows keep their own line numbers.
    content = b"external_id\n\nb1\n\n\nb2\nb3\n\nb4\n"
    _, _, batches, _ = csv_import.plan(content, 2)
    assert [r.line for b in batches for r in csv_import.records(
        content[b.start:b.end], start=0, end=None, first_line=b.first_line, delimiter=",",
        width=1)] == [3, 6, 7, 9]


def test_csv_rejects_unknown_columns_and_other_encodings():
    with pytest.raises(csv_import.CsvRejected, match="unknown column"):
        csv_import.plan(b"external_id,shoe_size\n1,42\n", 10)
    with pytest.raises(csv_import.CsvRejected, match="not UTF-8"):
        csv_import.plan("external_id\nM\xfcller\n".encode("latin-1"), 10)
