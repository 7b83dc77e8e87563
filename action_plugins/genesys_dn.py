"""Action plugin of task genesys_dn (documented in library/)."""

from remediate.actions import action_module

ActionModule = action_module("genesys_dn")
