"""The lab's WinRM endpoint: WS-Management shells over HTTP(S) with Basic and NTLM, and the
cmd.exe and PowerShell subset behind them (`server.WinRMEndpoint` is the entry point)."""
