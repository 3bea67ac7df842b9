"""(being written)"""

from blueprints.compliance import bp  # noqa: F401
