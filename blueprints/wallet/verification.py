"""(being written)"""

from blueprints.wallet import bp  # noqa: F401
