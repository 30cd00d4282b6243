"""Conversations, declared once and rendered by every platform."""
