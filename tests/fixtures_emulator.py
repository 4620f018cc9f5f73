"""Emulator fixtures (filled in by the emulator work)."""
