"""Action plugin of task genesys_object_restore (documented in library/)."""

from remediate.actions import action_module

ActionModule = action_module("genesys_object_restore")
