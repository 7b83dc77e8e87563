"""Action plugin of task remediate_send_register (documented in library/)."""

from remediate.actions import action_module

ActionModule = action_module("remediate_send_register")
