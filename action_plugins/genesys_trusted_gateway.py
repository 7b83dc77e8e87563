"""Action plugin of task genesys_trusted_gateway (documented in library/)."""

from remediate.actions import action_module

ActionModule = action_module("genesys_trusted_gateway")
