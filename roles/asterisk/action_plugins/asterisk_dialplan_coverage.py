"""Action: which DNs an extensions.conf context already routes, read from the Asterisk host.

Runs on the controller: reads the file and every file it includes (`#include`, `#tryinclude`) from
the target with `ansible.builtin.slurp`, as they are found, and parses them with the remediate
package, ignoring remediate's own managed block. Read-only; runs in check mode too.

Arguments: path (extensions.conf), context, dns (list), pattern (the managed block's extension
pattern). Returns `routes` ({dn: ["'_5XXX' at file:line", ...]}), `uncovered` (DNs no pattern of
the context routes), `files` (read), `problems` (included files missing, lines not understood).
Fails when a DN that needs the block is not matched by `pattern` (the block would not route it).
"""

from __future__ import annotations

import base64

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from remediate.changes import dialplan_coverage, pattern_misses
from remediate.errors import RemediateError

ARGUMENT_SPEC = {
    "path": {"type": "str", "required": True},
    "context": {"type": "str", "required": True},
    "dns": {"type": "list", "elements": "str", "required": True},
    "pattern": {"type": "str", "required": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)

        def read(path):
            answer = self._execute_module(
                module_name="ansible.builtin.slurp",
                module_args={"src": path},
                task_vars=task_vars,
            )
            if answer.get("failed"):
                message = str(answer.get("msg", ""))
                if "not found" in message:
                    raise FileNotFoundError(path)
                raise AnsibleActionFail(f"cannot read {path} on the Asterisk host: {message}")
            return base64.b64decode(answer["content"])

        try:
            coverage = dialplan_coverage(read, args["path"], args["context"], args["dns"])
        except RemediateError as error:
            raise AnsibleActionFail(f"{error.reference}: {error.message}") from None
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        misses = pattern_misses(args["pattern"], coverage.uncovered)
        result.update(
            changed=False,
            routes=coverage.routes,
            uncovered=coverage.uncovered,
            files=coverage.files,
            problems=coverage.problems,
            pattern_misses=misses,
        )
        if misses:
            result["failed"] = True
            result["msg"] = (
                f"no pattern of [{args['context']}] routes {', '.join(misses)}, and the pattern "
                f"{args['pattern']} would not either: set asterisk_genesys_pattern to one that "
                "matches every DN"
            )
        return result
