"""remediate: diagnose and fix Genesys SIP Server DNs that go out of service behind Asterisk."""

__version__ = "0.1.0"
