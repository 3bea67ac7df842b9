"""KYC verification, AML screening and monitoring, and suspicious-activity cases (spec service 5)."""
