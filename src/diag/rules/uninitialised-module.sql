-- uninitialised-module: the engine stopped because a module was used before ns_module_init().
-- The recorder stores the engine's message as an event before the run ends.
SELECT 'error' AS severity,
       m.id AS module_id,
       m.path AS module,
       NULL AS param,
       e.step AS first_step,
       e.step AS last_step,
       replace(replace(COALESCE(e.detail, 'a module was used before ns_module_init()'),
                       char(13), ''), char(10), ' ') AS message,
       printf('run %d ended with status ''%s'' %s', r.id, COALESCE(r.status, '?'),
              CASE WHEN e.step IS NULL THEN 'before its first step'
                   ELSE printf('at step %d', e.step) END) AS evidence,
       NULL AS fix
FROM events e
LEFT JOIN modules m ON m.run_id = e.run_id AND m.id = e.module_id
LEFT JOIN runs r ON r.id = e.run_id
WHERE e.run_id = :run AND e.kind = 'uninitialised_module'
ORDER BY e.id
