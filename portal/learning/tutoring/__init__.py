"""Elara, the course tutor (spec service 12, Azora Sapiens): retrieval over lesson passages,
conversations, the Q&A history, learning insights and personal learning paths."""
