"""Security: roles and permissions, password hashing, signed tokens."""
