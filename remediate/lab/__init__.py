"""The lab: a simulated estate (a Genesys SIP Server host and an Asterisk gateway host) on loopback.

Product code never imports this package; only tests and the `remediate lab` subcommand do, and this
package imports nothing from the product.
"""
