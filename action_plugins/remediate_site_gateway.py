"""Action plugin of task remediate_site_gateway (documented in library/)."""

from remediate.actions import action_module

ActionModule = action_module("remediate_site_gateway")
