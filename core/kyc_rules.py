"""The KYC rules of the CRM.COM manual as pure functions: which information a definition needs,
when a profile expires, and what a change of level does. Used by the workflow, activities and API.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from core.vocabulary import DocumentType, KycField, KycState

# A profile's expiry_cause when a document it rests on dates it.
DOCUMENT_EXPIRED = "document_expired"
# Fields whose value is the number on an uploaded document of this type.
DOCUMENT_OF_FIELD = {
    KycField.id_number: DocumentType.id_card,
    KycField.passport_number: DocumentType.passport,
}


def expiry_of_day(day: date) -> datetime:
    """When a document expires whose expiry date is `day`: the date printed on an ID card or
    passport is the last day it is valid, so it expires as the next day begins (UTC)."""
    if day == date.max:
        return datetime.combine(day, time.max, UTC)  # the calendar's last moment
    return datetime.combine(day + timedelta(days=1), time(), UTC)


def last_valid_day(expires_at: datetime) -> date:
    """The day shown for an expiry: the last one on which the document (or profile) is still
    valid, in UTC. For a document that is the date printed on it (`expiry_of_day`)."""
    return (expires_at.astimezone(UTC) - timedelta(microseconds=1)).date()


class KycRefused(ValueError):
    """A requested assignment or change of level that the rules do not allow."""


@dataclass
class Rule:
    field: str
    # At least two rules of a kind are semi-optional, or none; any one of them suffices.
    semi_optional: bool = False
    # Classification of the document that must be uploaded to prove the field.
    attachment: str | None = None
    # The profile expires when the document proving this field expires.
    requires_renewal: bool = False


@dataclass
class Evidence:
    """What is known of a contact: fields with a value, and per document type the expiry of the
    newest document that is still valid (None: it never expires), or of the newest one whose
    expiry has passed."""

    fields: set[str] = field(default_factory=set)
    documents: dict[str, datetime | None] = field(default_factory=dict)
    # They prove nothing, but they date a profile that rests on them: a date corrected into
    # the past expires it as the day coming would have.
    expired: dict[str, datetime] = field(default_factory=dict)


def rules_of(rules: list[dict]) -> list[Rule]:
    return [Rule(**r) for r in rules]


def documents_of(rule: Rule) -> list[str]:
    backing = DOCUMENT_OF_FIELD.get(KycField(rule.field))
    return list(dict.fromkeys(d for d in (backing, rule.attachment) if d is not None))


def rule_met(rule: Rule, evidence: Evidence) -> bool:
    return rule.field in evidence.fields and all(d in evidence.documents for d in documents_of(rule))


def _what_is_missing(rule: Rule, evidence: Evidence) -> str:
    """The field, or, when the contact has the field, the document that must prove it."""
    if rule.field not in evidence.fields:
        return rule.field
    return " & ".join(d for d in documents_of(rule) if d not in evidence.documents)


def missing_information(rules: list[Rule], evidence: Evidence) -> list[str]:
    """Names what is missing: a field or the document proving it, or `a | b` when none of the
    semi-optional ones is met."""
    missing = [_what_is_missing(r, evidence) for r in rules
               if not r.semi_optional and not rule_met(r, evidence)]
    group = [r for r in rules if r.semi_optional]
    if group and not any(rule_met(r, evidence) for r in group):
        missing.append(" | ".join(_what_is_missing(r, evidence) for r in group))
    return missing


def _rule_expiry(rule: Rule, evidence: Evidence) -> datetime | None:
    if not rule.requires_renewal:
        return None
    dates = [evidence.documents[d] for d in documents_of(rule) if evidence.documents.get(d)]
    return min(dates, default=None)


def renewal_expiry(rules: list[Rule], evidence: Evidence) -> datetime | None:
    """When a document the profile relies on expires, a past date when one has expired. A
    semi-optional group lasts as long as its longest-valid member; every required field counts
    on its own."""
    held = Evidence(evidence.fields, {**evidence.expired, **evidence.documents})
    dates = [_rule_expiry(r, held) for r in rules if not r.semi_optional and rule_met(r, held)]
    group = [r for r in rules if r.semi_optional and rule_met(r, held)]
    if group:
        group_dates = [_rule_expiry(r, held) for r in group]
        # One member that never needs renewal keeps the group valid for good.
        if all(d is not None for d in group_dates):
            dates.append(max(d for d in group_dates if d is not None))
    return min((d for d in dates if d is not None), default=None)


def profile_expiry(
    assigned_at: datetime, expires_after: timedelta | None, renewal: datetime | None
) -> tuple[datetime | None, str | None]:
    """The expiry date and its cause: the definition's period since assignment, or a document."""
    period = assigned_at + expires_after if expires_after is not None else None
    if renewal is not None and (period is None or renewal < period):
        return renewal, DOCUMENT_EXPIRED
    return period, "period_passed" if period is not None else None


def state_after_assignment(
    current_state: str | None, current_level: int | None, new_level: int,
    requires_verification: bool, missing: list[str],
) -> KycState:
    """CRM.COM's rules for assigning a profile and for changing it to another level."""
    by_definition = (KycState.pending_verification if requires_verification
                     else KycState.verified)
    if current_state is None or current_level is None:
        if missing:
            raise KycRefused(f"required information is missing: {', '.join(missing)}")
        return by_definition
    if new_level < current_level:
        # A lower level asks for less than was already accepted.
        return KycState.verified
    if current_state == KycState.verified and missing:
        raise KycRefused("a verified customer moves to a higher level only once its required "
                         f"information is present; missing: {', '.join(missing)}")
    return by_definition


def required_fields(rules: list[Rule]) -> set[str]:
    return {r.field for r in rules if not r.semi_optional}


def level_conflicts(
    level: int, rules: dict[str, list[Rule]], others: list[tuple[int, str, dict[str, list[Rule]]]]
) -> list[str]:
    """A field required at a lower level must be defined at every higher level too.

    `others` are the client's other definitions as (level, name, rules per contact kind)."""
    problems = []
    for other_level, name, other_rules in others:
        lower, higher = ((other_rules, rules) if other_level < level else (rules, other_rules))
        for kind in ("person", "company"):
            defined_higher = {r.field for r in higher.get(kind, [])}
            for f in sorted(required_fields(lower.get(kind, [])) - defined_higher):
                problems.append(f"{kind} field {f!r} is required at level "
                                f"{min(level, other_level)} and so must be defined at level "
                                f"{max(level, other_level)} ({name if other_level > level else 'this definition'})")
    return problems
