"""The errors of QR-code login; HTTP status per code in ``gateway.errors``."""

from __future__ import annotations

from certs.errors import CertGateError


class QrTicketUnknown(CertGateError):
    """No such ticket for this caller: an unknown ticket or QR code, a browser without the
    ticket's secret cookie, a phone session other than the one that scanned it."""

    code = "qr_ticket_unknown"
    templates = {
        "zh-CN": "二维码无效或不属于当前会话，请刷新二维码后重新扫描。",
        "en": "The QR code is not valid or belongs to another session; refresh it and scan again.",
    }


class QrTicketExpired(CertGateError):
    code = "qr_ticket_expired"
    templates = {
        "zh-CN": "二维码已过期，请在电脑上刷新二维码后重新扫描。",
        "en": "The QR code has expired; refresh it on the computer and scan again.",
    }


class QrTicketUsed(CertGateError):
    """Scanned already, confirmed or cancelled already, or its login already started."""

    code = "qr_ticket_used"
    templates = {
        "zh-CN": "该二维码已被扫描或已使用，请在电脑上刷新二维码后重新扫描。",
        "en": "This QR code has already been scanned or used; refresh it on the computer and "
        "scan again.",
    }
