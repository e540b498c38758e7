"""The dashboard's account pages: sign-up, login, logout and the verification email sent again."""

import hmac
import time
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from pydantic import EmailStr, TypeAdapter, ValidationError

from functions.dashboard.pages.common import (
    COOKIE_PATH,
    SESSION_COOKIE,
    AnonymousFormDep,
    FormDep,
    SignedInDep,
    anonymous_page,
    notice_of,
    page_router,
    render,
    see_other,
    set_cookie,
)
from shared.accounts import organizations, sessions
from shared.config import Settings, get_settings
from shared.errors import AuthenticationFailed, AuthenticationThrottled, SignupThrottled, ValidationFailed
from shared.http import auth, throttle
from shared.http.deps import SettingsDep, client_address
from shared.jobs import outbox as jobs
from shared.platform import db

router = page_router()

COMMON_TIMEZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
)

_EMAIL = TypeAdapter(EmailStr)


@router.get("/signup")
def signup_page(request: Request) -> HTMLResponse:
    return anonymous_page(request, "signup.html", **_signup_context(get_settings(), {}, {}))


def _signup_context(settings: Settings, values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "timezones": COMMON_TIMEZONES,
        "needs_token": not settings.is_local,
    }


@router.post("/signup")
def signup(request: Request, form: AnonymousFormDep, settings: SettingsDep) -> HTMLResponse:
    values = {k: form.get(k, "").strip() for k in ("name", "admin_email", "timezone", "timezone_other")}
    timezone = values["timezone_other"] or values["timezone"] or "UTC"
    errors: dict[str, str] = {}
    if not 1 <= len(values["name"]) <= 200:
        errors["name"] = "Enter your organization's name (up to 200 characters)."
    try:
        _EMAIL.validate_python(values["admin_email"])
    except ValidationError:
        errors["admin_email"] = "Enter a valid email address, like finance@example.com."
    try:
        organizations.validate_timezone(timezone)
    except ValidationFailed as exc:
        errors["timezone"] = exc.errors[0]["message"]
    if not settings.is_local and not _signup_token_ok(form.get("signup_token"), settings.signup_token):
        errors["signup_token"] = "This sign-up token is not valid."
    try:
        throttle.check_signup(address=client_address(request), settings=settings)
    except SignupThrottled as refused:
        context = _signup_context(settings, values, errors)
        response = anonymous_page(request, "signup.html", 429, error=refused.message, **context)
        response.headers.update(refused.headers)
        return response
    if errors:
        return anonymous_page(request, "signup.html", 422, **_signup_context(settings, values, errors))
    # Here, not at the top: signing up is rare, and Stripe's SDK would cost every dashboard cold start about 35 ms.
    from shared.vendors import stripe as stripe_api

    created = organizations.sign_up(
        stripe_api.get_client(),
        name=values["name"],
        admin_email=values["admin_email"],
        timezone=timezone,
        key_mode=settings.key_mode,
        attach_test_card=settings.is_local,
        email_verified=settings.is_local,
    )
    # Shown once, in this response only; it is never stored in clear, in a cookie or in a URL.
    return render("signup_done.html", organization=created.organization, admin_key=created.admin_key.plaintext)


def _signup_token_ok(sent: str | None, expected: str | None) -> bool:
    return bool(sent and expected and hmac.compare_digest(sent.encode(), expected.encode()))


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return anonymous_page(request, "login.html", error=None, notice=notice_of(request))


@router.post("/login")
def login(request: Request, form: AnonymousFormDep) -> Response:
    key = form.get("admin_key", "").strip()
    try:
        admin = auth.authenticate_admin(f"Bearer {key}")
        with db.connection() as conn:
            session = sessions.open_session(
                conn, organization_id=admin.organization_id, admin_key_hash=auth.hash_key(key)
            )
    except AuthenticationFailed as failure:
        refusal = throttle.refusal_after(
            failure, address=client_address(request), key=key, limits=throttle.Limits.of(get_settings())
        )
        if isinstance(refusal, AuthenticationThrottled):
            retry_after = refusal.headers["Retry-After"]
            message = f"Too many failed logins from this address. Try again in {retry_after} seconds."
            response = anonymous_page(request, "login.html", 429, error=message, notice=None)
            response.headers["Retry-After"] = retry_after
            return response
        message = "That admin key is not valid. Paste the whole key, starting with apa_."
        if key.startswith("apk_"):
            message = "That is an agent key. Log in with your organization's admin key (it starts with apa_)."
        return anonymous_page(request, "login.html", 401, error=message, notice=None)
    signed_in = see_other("/dashboard")
    set_cookie(signed_in, SESSION_COOKIE, session.token, max_age=sessions.SESSION_MAX_AGE_SECONDS)
    return signed_in


@router.post("/logout")
def logout(who: SignedInDep, form: FormDep) -> Response:
    # Ended in the database first: a copy of the cookie (another tab, a stolen one) is refused from now on.
    with db.connection() as conn:
        sessions.revoke_session(conn, session_id=who.session_id)
    response = see_other("/dashboard/login", notice="logged_out")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


@router.post("/verify-email/resend")
def resend_email_verification(who: SignedInDep, form: FormDep) -> Response:
    """Queue the verification email again (one per minute at most: the job's name is the minute)."""
    if who.organization.get("email_verified_at") is None:
        minute = str(int(time.time()) // 60)
        with db.connection() as conn:
            job = jobs.enqueue(conn, jobs.email_verification_job(who.organization_id, resend=minute))
        jobs.publish([job])
    return see_other("/dashboard", notice="verification_sent")
