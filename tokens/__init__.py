"""Authenticators and sessions: password, PIN, OTP tokens, letter codes."""
