from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from blueprints.web import valid_email
from portal.security.passwords import MAX_LENGTH, MIN_LENGTH

EMAIL = [DataRequired("Enter your e-mail address."), Length(max=254, message="That address is too long."),
         valid_email]


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=EMAIL, render_kw={"autocomplete": "username"})
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=1000)],
                             render_kw={"autocomplete": "current-password"})
    next = HiddenField()


def _new_password(label: str = "Password"):
    return PasswordField(label, validators=[
        DataRequired("Choose a password."),
        Length(min=MIN_LENGTH, max=MAX_LENGTH, message=f"Use {MIN_LENGTH} to {MAX_LENGTH} characters."),
    ], render_kw={"autocomplete": "new-password"})


class RegisterForm(FlaskForm):
    full_name = StringField("Full name", validators=[DataRequired("Enter your full name."), Length(max=120)],
                            render_kw={"autocomplete": "name"})
    email = EmailField("E-mail", validators=EMAIL, render_kw={"autocomplete": "email"})
    password = _new_password()
    confirm = PasswordField("Repeat the password", validators=[
        DataRequired("Repeat the password."), EqualTo("password", "The two passwords differ.")],
        render_kw={"autocomplete": "new-password"})


class EmailOnlyForm(FlaskForm):
    email = EmailField("E-mail", validators=EMAIL, render_kw={"autocomplete": "email"})


class NewPasswordForm(FlaskForm):
    new_password = _new_password("New password")
    confirm = PasswordField("Repeat the new password", validators=[
        DataRequired("Repeat the password."), EqualTo("new_password", "The two passwords differ.")],
        render_kw={"autocomplete": "new-password"})


class ChangePasswordForm(NewPasswordForm):
    current_password = PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=1000)],
        render_kw={"autocomplete": "current-password"})
