"""Documentation shared by remediate's tasks (`extends_documentation_fragment`)."""


class ModuleDocFragment:
    # Every task: an action plugin, run inside ansible-playbook.
    DOCUMENTATION = r"""
options: {}
notes:
  - Runs inside ansible-playbook (an action plugin; code in remediate/actions.py), so the Python
    that runs ansible-playbook must have the C(remediate) package.
"""

    # The Genesys tasks: how they reach the Genesys host.
    GENESYS = r"""
options:
  connection:
    description:
      - The Genesys host's inventory variables (C(inventory_host), C(ansible_host),
        C(genesys_gax_url), ...; see GENESYS_CONNECTION_VARIABLES in remediate/actions.py).
      - By default, the ones the inventory sets for the task's host (also under
        C(delegate_to=localhost)); passed explicitly only to reach another host.
    type: dict
notes:
  - Reaches the Genesys host itself from the controller (GAX over HTTPS, WinRM), whatever the
    task's connection; run it with C(delegate_to=localhost).
"""
