"""The errors of enterprise roles. Each maps to one stable code (HTTP status in
``gateway.errors.CAPABILITY_STATUS``; messages in zh-CN and en)."""

from __future__ import annotations

from certs.errors import CertGateError


class RoleRequired(CertGateError):
    """No current role for the enterprise: never had one, or it expired, was revoked, was
    left, or the legal representative changed — also while already acting for it."""

    code = "role_required"
    templates = {
        "zh-CN": "您当前不是该企业的法定代表人或有效期内的经办人（授权可能已到期、被撤销或"
        "法定代表人已变更），不能代表该企业办理业务。请切换回个人身份。",
        "en": "You are not the enterprise's legal representative or a staff member within the "
        "authorised period (the authorisation may have expired or been revoked, or the legal "
        "representative changed), so you cannot act for it. Switch back to yourself.",
    }


class EnterpriseRequired(CertGateError):
    """Managing staff needs the enterprise itself: its own login, or its legal representative
    acting for it."""

    code = "enterprise_required"
    templates = {
        "zh-CN": "只有企业账户本身，或代表企业的法定代表人，才能管理经办人。",
        "en": "Only the enterprise's own account, or its legal representative acting for it, "
        "can manage staff.",
    }


class InvitationUnknown(CertGateError):
    code = "invitation_unknown"
    templates = {
        "zh-CN": "没有找到这份经办人邀请，或它不是发给您的。",
        "en": "There is no such staff invitation, or it was not sent to you.",
    }


class InvitationClosed(CertGateError):
    """Already answered, replaced by a newer invitation, or past its deadline."""

    code = "invitation_closed"
    templates = {
        "zh-CN": "这份经办人邀请已处理、已被新的邀请取代或已过期，不能再接受或拒绝。",
        "en": "This staff invitation was already answered, replaced by a newer one, or has "
        "expired; it can no longer be accepted or declined.",
    }

    def __init__(self, detail: str = "", *, state: str) -> None:
        super().__init__(detail)
        self.state = state

    def json_fields(self) -> dict[str, str]:
        return {"state": self.state}


class RoleUnknown(CertGateError):
    """Revoking a person who is not current staff, or leaving an enterprise one is not staff
    of (a legal representative's role follows the enterprise's record, not a choice)."""

    code = "role_unknown"
    templates = {
        "zh-CN": "没有找到有效的经办人授权，无需撤销或退出。",
        "en": "There is no current staff authorisation to revoke or leave.",
    }


class PeriodInvalid(CertGateError):
    code = "period_invalid"
    templates = {
        "zh-CN": "授权期限须晚于当前时间，且不超过 {max_days} 天。",
        "en": "The authorised period must end in the future and within {max_days} days.",
    }

    def __init__(self, detail: str = "", *, max_days: int) -> None:
        super().__init__(detail, max_days=max_days)
