from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from blueprints.web import valid_email
from portal.accounts.models import STAFF_ROLES, Role

STAFF_CHOICES = [SelectChoice(r.value, r.label) for r in STAFF_ROLES]
ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role]


class StaffForm(FlaskForm):
    full_name = StringField("Full name", validators=[DataRequired("Enter the person's full name."), Length(max=120)])
    email = EmailField("E-mail", validators=[DataRequired("Enter an e-mail address."), Length(max=254),
                                                    valid_email])
    role = SelectField("Role", choices=STAFF_CHOICES, validators=[DataRequired("Choose a role.")])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES, validators=[DataRequired("Choose a role.")])
