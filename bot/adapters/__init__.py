"""Platforms: each translates its payloads to neutral forms and renders neutral messages."""
