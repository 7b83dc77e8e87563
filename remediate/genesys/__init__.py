"""Genesys SIP Server: its log files (and, later, its configuration and its Windows service)."""
