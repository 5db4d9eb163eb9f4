"""The operator console's errors: each maps to one stable code (docs/gateway.md)."""

from __future__ import annotations

from datetime import datetime

from certs.errors import CertGateError


class Forbidden(CertGateError):
    """The operator's role does not allow this action (an auditor changing something, a
    reviewer outside the review queue)."""

    code = "forbidden"
    templates = {
        "zh-CN": "当前操作员角色（{role}）无权执行此操作。",
        "en": "The operator role ({role}) does not allow this action.",
    }

    def __init__(self, detail: str = "", *, role: str) -> None:
        super().__init__(detail, role=role)


class ReviewClosed(CertGateError):
    """A real-name review that was already approved or rejected is decided again."""

    code = "review_closed"
    templates = {
        "zh-CN": "该实名审核申请已处理，不能再次审批。",
        "en": "This real-name review has already been decided.",
    }


class OperatorLocked(CertGateError):
    """Too many failed console sign-ins for one operator name: the stable ``account_locked``
    with the console's own wording."""

    code = "account_locked"
    templates = {
        "zh-CN": "操作员登录失败次数过多，已锁定至 {locked_until:%Y-%m-%d %H:%M} UTC。",
        "en": "Too many failed operator sign-ins; locked until {locked_until:%Y-%m-%d %H:%M} UTC.",
    }

    def __init__(self, detail: str = "", *, locked_until: datetime) -> None:
        super().__init__(detail, locked_until=locked_until)
        self.locked_until = locked_until

    def json_fields(self) -> dict[str, str]:
        return {
            "method": "operator",
            "locked_until": self.locked_until.isoformat().replace("+00:00", "Z"),
        }
