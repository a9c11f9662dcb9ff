"""``drainctl deploy`` and its parts, one module per step.

- ``plan``: what will be drained (live instances by process type, the Procfile, the pushed commit)
- ``gitrepo``: the few git questions the plan and the hook ask
- ``orchestrator``: fence + drain, push, verify; resumes and lifts the fence on any failure
- ``push``: run the push command through ``sh``, streaming its output
- ``verify``: decide from heartbeats whether the new release is up, stable and alone
- ``progress``: the live display (rich on a terminal, plain lines otherwise)
- ``githook``: the pre-push hook (install, uninstall, run)
- ``commands``: the click commands, registered on the ``drainctl`` group
"""
