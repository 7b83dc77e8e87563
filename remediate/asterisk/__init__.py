"""The Asterisk gateway: its CLI (`asterisk -rx`) and its configuration files."""
