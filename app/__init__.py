"""Potluck's desktop app (PySide6 only). It never imports torch, transformers or hivemind."""
