"""Certificates: the public verification page, its PDF, the published public key, a form to
look a code up, a student's own certificates, and revoking (course staff or an admin).

Importing this module imports portal.learning.lms.certificates, which connects the
``course_completed`` receiver that issues certificates.
"""

from __future__ import annotations

from flask import flash, make_response, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import TextAreaField

from blueprints.learning import bp
from blueprints.web import UrlLinks, attach_error, is_htmx, redirect_to, render
from portal.db import db
from portal.errors import DomainError
from portal.learning.lms import certificates as service
from portal.security.access import public, requires
from portal.security.permissions import Permission


class RevokeForm(FlaskForm):
    # Length is the service's rule (it names the limit); the field only carries the text.
    reason = TextAreaField("Reason (shown on the public page)")


class CertificateLinks(UrlLinks):
    def verify(self, code: str) -> str:
        return self._url("learning.certificate", code=code)


def _viewer():
    return current_user._get_current_object() if current_user.is_authenticated else None


def _show(code: str, form: RevokeForm | None = None, *, status: int = 200, block: str | None = None):
    certificate = service.get_by_code(code)
    signer = service.current_signer()
    check = service.check_one(certificate, signer)
    viewer = _viewer()
    may_revoke = certificate.revoked_at is None and service.may_revoke(viewer, certificate)
    response = render("learning/certificates/show.html", block, status=status, certificate=certificate,
                      check=check, key_id=signer.key_id, may_revoke=may_revoke, form=form or RevokeForm(),
                      max_reason=service.MAX_REASON)
    _always_fresh(response)
    return response


def _always_fresh(response) -> None:
    """A revocation must show at once: caches ask again every time. (Logged-in pages get the
    app's ``no-store`` anyway.)"""
    if not current_user.is_authenticated:
        response.headers["Cache-Control"] = "no-cache"


@bp.get("/certificates/verify")
@public
def verify_certificate():
    raw = request.args.get("code", "").strip()[:300]
    error = None
    if raw:
        # A pasted address works as well as the bare code.
        code = raw.rstrip("/").rsplit("/", 1)[-1].removesuffix(".pdf")
        try:
            service.get_by_code(code)
        except DomainError as exc:
            error = exc.message
        else:
            return redirect_to("learning.certificate", code=code)
    return render("learning/certificates/verify.html", "lookup", status=404 if error else 200, code=raw,
                  error=error)


@bp.get("/certificates/public-key")
@public
def certificate_public_key():
    signer = service.current_signer()
    return render("learning/certificates/public_key.html", public_pem=signer.public_pem, key_id=signer.key_id)


@bp.get("/certificates/mine")
@requires(Permission.LEARN)
def my_certificates():
    page = service.certificates_of(current_user, request.args.get("after"))
    block = "rows" if is_htmx() and request.args.get("after") else None
    return render("learning/certificates/mine.html", block, page=page)


@bp.get("/certificates/<code>")
@public
def certificate(code: str):
    return _show(code)


@bp.get("/certificates/<code>.pdf")
@public
def certificate_pdf(code: str):
    from portal.learning.lms.certificate_pdf import render_pdf

    certificate = service.get_by_code(code)
    body = render_pdf(certificate, CertificateLinks().verify(certificate.code))
    response = make_response(body)
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="certificate-{certificate.code}.pdf"'
    _always_fresh(response)
    return response


@bp.post("/certificates/<code>/revoke")
@requires(Permission.TEACH)
def revoke_certificate(code: str):
    form = RevokeForm()
    if not form.validate():
        return _show(code, form, status=400, block="status")
    try:
        certificate = service.revoke_certificate(current_user, code, form.reason.data)
    except DomainError as exc:
        db.session.rollback()
        if exc.field != "reason":
            raise
        attach_error(form, exc)
        return _show(code, form, status=422, block="status")
    db.session.commit()
    if is_htmx():
        return _show(certificate.code, block="status")
    flash("The certificate is revoked. Its page now says so, with your reason.", "success")
    return redirect_to("learning.certificate", code=certificate.code)
