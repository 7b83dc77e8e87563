"""The lab's simulated Genesys host: SIP Server (`TSrvSIP64`), its log, its configuration, GAX, the
softphone, and (from remediate.lab.winrm) the WinRM endpoint, in one process.

Run it with `python -m remediate.lab.genesys --dir DIR [--scenario NAME]`.
"""
