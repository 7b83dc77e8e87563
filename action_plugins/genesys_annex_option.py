"""Action plugin of task genesys_annex_option (documented in library/)."""

from remediate.actions import action_module

ActionModule = action_module("genesys_annex_option")
