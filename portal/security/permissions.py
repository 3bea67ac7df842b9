"""Roles mapped to permissions, in one place.

Views declare what they need with ``portal.security.access`` (``public``, ``login_required``,
``requires(Permission.X)``); the app factory enforces the declaration on every request, and a
test walks the URL map to prove every route declares one. Services still check data-level
access (whose row is this), which no permission can express.
"""

from __future__ import annotations

import enum

from portal.accounts.models import Role


class Permission(enum.StrEnum):
    # Learning
    LEARN = "learn"  #: enrol, study, take quizzes, ask the tutor
    TEACH = "teach"  #: build courses, grade
    # Money
    USE_WALLET = "use_wallet"
    MANAGE_MONEY = "manage_money"  #: fees, rates, withdrawals approval, system wallets
    # Compliance
    REVIEW_COMPLIANCE = "review_compliance"  #: KYC review, AML hits, cases
    SUPERVISE_CASES = "supervise_cases"  #: every case and the escalated queue (senior officers)
    VIEW_SECURITY = "view_security"  #: security events, blocks
    # Administration
    MANAGE_USERS = "manage_users"
    VIEW_SYSTEM = "view_system"  #: system health, audit trail

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Permission.LEARN: "study as a student",
    Permission.TEACH: "teach and grade courses",
    Permission.USE_WALLET: "use a wallet",
    Permission.MANAGE_MONEY: "manage fees, rates and withdrawals",
    Permission.REVIEW_COMPLIANCE: "review KYC, AML alerts and cases",
    Permission.SUPERVISE_CASES: "supervise all compliance cases",
    Permission.VIEW_SECURITY: "view security events",
    Permission.MANAGE_USERS: "manage user accounts",
    Permission.VIEW_SYSTEM: "view system health and the audit trail",
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.STUDENT: frozenset({Permission.LEARN, Permission.USE_WALLET}),
    Role.FACULTY: frozenset({Permission.TEACH}),
    Role.COMPLIANCE: frozenset({Permission.REVIEW_COMPLIANCE, Permission.VIEW_SECURITY}),
    Role.ADMIN: frozenset(
        {
            Permission.TEACH,
            Permission.MANAGE_MONEY,
            Permission.REVIEW_COMPLIANCE,
            Permission.SUPERVISE_CASES,
            Permission.VIEW_SECURITY,
            Permission.MANAGE_USERS,
            Permission.VIEW_SYSTEM,
        }
    ),
}


def has_permission(role: Role | str | None, permission: Permission) -> bool:
    if role is None:
        return False
    return permission in ROLE_PERMISSIONS.get(Role(role), frozenset())


def roles_with(permission: Permission) -> list[Role]:
    return [role for role, perms in ROLE_PERMISSIONS.items() if permission in perms]
