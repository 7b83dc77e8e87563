"""The lab's Asterisk host: SSH server, `asterisk` remote console and daemon, the gateway's SIP.

Run it with `python -m remediate.lab.asterisk --dir DIR [--scenario NAME]`.
"""
