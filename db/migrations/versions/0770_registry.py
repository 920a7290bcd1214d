"""A client can remove a contact point (contact_points.removed_at): kept for the audit trail,
written to no more. An email address is one point in any letter case: the duplicates stored
before (Ann@x.nl beside ann@x.nl) are folded into the first spelt, which takes a verification
only a later spelling had; the later ones are removed, each change in the audit trail; a unique
index keeps new ones out.

Revision ID: 0770_registry
Revises: 0740_answered_and_cancelled
"""

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0770_registry"
down_revision = "0740_answered_and_cancelled"
branch_labels = None
depends_on = None

IN_USE_EMAIL = "kind = 'email' AND removed_at IS NULL"
ACTOR = ("system", f"migration {revision}")

WHEN = sa.DateTime(timezone=True)
points = sa.table("contact_points", *(sa.column(c) for c in (
    "id", "client_id", "contact_id", "kind", "value", "verification_state", "verified_via")),
    *(sa.column(c, WHEN) for c in ("verified_at", "created_at", "removed_at")))
audit = sa.table("audit_entries", *(sa.column(c) for c in (
    "client_id", "actor_type", "actor_id", "action", "contact_id")),
    sa.column("at", WHEN), sa.column("detail", sa.JSON))


def upgrade() -> None:
    with op.batch_alter_table("contact_points") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    fold_case_duplicates(op.get_bind(), datetime.now(UTC))
    op.create_index("uq_contact_points_email", "contact_points",
                    ["contact_id", sa.text("lower(value)")], unique=True,
                    postgresql_where=sa.text(IN_USE_EMAIL), sqlite_where=sa.text(IN_USE_EMAIL))


def fold_case_duplicates(bind: sa.Connection, now: datetime) -> None:
    other = points.alias("other")
    rows = bind.execute(sa.select(points).where(points.c.kind == "email", sa.exists().where(
        other.c.contact_id == points.c.contact_id, other.c.kind == "email",
        sa.func.lower(other.c.value) == sa.func.lower(points.c.value),
        other.c.id != points.c.id)).order_by(points.c.created_at, points.c.id)).all()
    groups = defaultdict(list)
    for row in rows:
        groups[(row.contact_id, row.value.lower())].append(row)
    entries = []
    for keeper, *later in groups.values():
        verified = [p for p in later if p.verification_state == "verified"]
        if verified and keeper.verification_state != "verified":
            newest = verified[-1]
            bind.execute(points.update().where(points.c.id == keeper.id).values(
                verification_state="verified", verified_at=newest.verified_at,
                verified_via=newest.verified_via))
            entries.append(entry(keeper, now, {"state": keeper.verification_state},
                                 {"state": "verified", "as": newest.value}))
        bind.execute(points.update().where(points.c.id.in_([p.id for p in later])).values(
            removed_at=now))
        entries += [entry(p, now, {}, {"removed_at": now.isoformat(), "same_as": keeper.value})
                    for p in later]
    if entries:
        bind.execute(audit.insert(), entries)


def entry(point, now: datetime, old: dict, new: dict) -> dict:
    seen = {"kind": "email", "value": point.value}
    return {"client_id": point.client_id, "at": now, "actor_type": ACTOR[0], "actor_id": ACTOR[1],
            "action": "update", "contact_id": point.contact_id,
            "detail": {"changes": {"contact_points": {"old": {**seen, **old},
                                                      "new": {**seen, **new}}}}}


def downgrade() -> None:
    op.drop_index("uq_contact_points_email", table_name="contact_points")
    with op.batch_alter_table("contact_points") as batch:
        batch.drop_column("removed_at")
