"""Compliance: KYC/AML and security."""
