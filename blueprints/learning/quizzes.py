from blueprints.learning import bp  # noqa: F401
