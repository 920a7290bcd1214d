"""The KYC rules of the CRM.COM manual as pure logic, and the document checks of the storage."""

from datetime import UTC, datetime, timedelta

import pytest

from core.kyc_rules import (
    Evidence,
    KycRefused,
    Rule,
    level_conflicts,
    missing_information,
    profile_expiry,
    renewal_expiry,
    state_after_assignment,
)
from core.storage import LocalDirectoryStorage, sniff_content_type
from core.vocabulary import KycState

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ID_OR_PASSPORT = [
    Rule("last_name"),
    Rule("id_number", semi_optional=True, requires_renewal=True),
    Rule("passport_number", semi_optional=True, requires_renewal=True),
]


def test_one_semi_optional_field_suffices():
    assert missing_information(ID_OR_PASSPORT, Evidence({"last_name"})) == [
        "id_number | passport_number"]
    has_passport = Evidence({"last_name", "passport_number"}, {"passport": None})
    assert missing_information(ID_OR_PASSPORT, has_passport) == []
    assert missing_information(ID_OR_PASSPORT, Evidence({"passport_number"}, {"passport": None})) \
        == ["last_name"]


def test_a_field_with_an_attachment_needs_the_document():
    rules = [Rule("last_name", attachment="proof_of_address")]
    # The contact has the field: what is missing is the document that proves it.
    assert missing_information(rules, Evidence({"last_name"})) == ["proof_of_address"]
    assert missing_information(rules, Evidence(set())) == ["last_name"]
    assert missing_information(rules, Evidence({"last_name"}, {"proof_of_address": None})) == []
    assert missing_information(ID_OR_PASSPORT, Evidence({"last_name", "id_number"})) == [
        "id_card | passport_number"]


def test_renewal_follows_the_documents_the_profile_relies_on():
    both = Evidence({"last_name", "id_number", "passport_number"},
                    {"id_card": T0, "passport": T0 + timedelta(days=300)})
    # Either document suffices, so the group lasts as long as the longer-valid one.
    assert renewal_expiry(ID_OR_PASSPORT, both) == T0 + timedelta(days=300)
    only_id = Evidence({"last_name", "id_number"}, {"id_card": T0})
    assert renewal_expiry(ID_OR_PASSPORT, only_id) == T0
    required_id = [Rule("id_number", requires_renewal=True), Rule("passport_number")]
    assert renewal_expiry(required_id, both) == T0
    assert renewal_expiry([Rule("id_number")], both) is None
    # An expired document proves nothing, but the profile resting on it has expired with it.
    expired_id = Evidence({"last_name", "id_number", "passport_number"},
                          {"passport": T0 + timedelta(days=300)}, {"id_card": T0})
    assert missing_information(required_id, expired_id) == ["id_card"]
    assert renewal_expiry(required_id, expired_id) == T0
    assert renewal_expiry(ID_OR_PASSPORT, expired_id) == T0 + timedelta(days=300)


def test_profile_expiry_is_the_earlier_of_period_and_document():
    assert profile_expiry(T0, timedelta(days=10), None) == (T0 + timedelta(days=10),
                                                           "period_passed")
    assert profile_expiry(T0, timedelta(days=10), T0 + timedelta(days=2)) == (
        T0 + timedelta(days=2), "document_expired")
    assert profile_expiry(T0, None, None) == (None, None)
    assert profile_expiry(T0, None, T0) == (T0, "document_expired")


def test_first_assignment_needs_the_information_and_follows_the_definition():
    assert state_after_assignment(None, None, 2, True, []) == KycState.pending_verification
    assert state_after_assignment(None, None, 2, False, []) == KycState.verified
    with pytest.raises(KycRefused):
        state_after_assignment(None, None, 2, True, ["passport_number"])


def test_level_changes_follow_the_seed():
    # To a lower level: free, and verified at once.
    assert state_after_assignment(KycState.pending_verification, 3, 1, True, ["x"]) \
        == KycState.verified
    # To a higher level, verified: only with the information present.
    with pytest.raises(KycRefused):
        state_after_assignment(KycState.verified, 1, 2, True, ["passport_number"])
    assert state_after_assignment(KycState.verified, 1, 2, True, []) \
        == KycState.pending_verification
    # To a higher level, not verified: at once, state by the definition.
    assert state_after_assignment(KycState.pending_verification, 1, 2, True, ["x"]) \
        == KycState.pending_verification
    assert state_after_assignment(KycState.refuted, 1, 2, False, ["x"]) == KycState.verified


def test_a_field_required_at_a_lower_level_is_defined_at_higher_levels():
    basic = {"person": [Rule("last_name"), Rule("email")]}
    higher_without_email = {"person": [Rule("last_name"), Rule("passport_number")]}
    problems = level_conflicts(2, higher_without_email, [(1, "Basic", basic)])
    assert len(problems) == 1 and "'email'" in problems[0]
    assert level_conflicts(2, {"person": [Rule("last_name"), Rule("email", semi_optional=True),
                                          Rule("mobile", semi_optional=True)]},
                           [(1, "Basic", basic)]) == []
    # The same rule holds when the new definition is the lower one.
    assert level_conflicts(1, basic, [(2, "Identified", higher_without_email)])


def test_document_type_is_judged_by_its_bytes():
    assert sniff_content_type(b"%PDF-1.7\n") == "application/pdf"
    assert sniff_content_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_content_type(b"<html><script>") is None


async def test_local_storage_keeps_documents_inside_its_directory(tmp_path):
    storage = LocalDirectoryStorage(tmp_path)
    await storage.put("client/contact/doc", b"%PDF-1.7")
    assert await storage.get("client/contact/doc") == b"%PDF-1.7"
    with pytest.raises(ValueError):
        await storage.put("../outside", b"x")
