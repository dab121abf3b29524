-- unregistered-module: a module that ran inside a registered module's forward without being
-- registered under the model. Only the top of each unregistered subtree is reported (its
-- unregistered children are counted in the evidence); modules built inside a forward are left
-- to module-created-in-forward.
WITH RECURSIVE
tops AS (
  SELECT m.id, m.path, m.type, m.first_step, p.path AS caller
  FROM modules m
  JOIN modules p ON p.run_id = m.run_id AND p.id = m.parent_id
  WHERE m.run_id = :run AND m.registered = 0 AND m.created_in_forward = 0
    AND p.registered = 1
),
sub (top, id, depth) AS (
  SELECT id, id, 0 FROM tops
  UNION
  SELECT sub.top, c.id, sub.depth + 1
  FROM sub JOIN modules c ON c.run_id = :run AND c.parent_id = sub.id AND c.registered = 0
  WHERE sub.depth < 64
),
agg AS (
  SELECT s.top,
         COUNT(DISTINCT s.id) - 1 AS n_sub,
         (SELECT COALESCE(SUM(p.numel), 0) FROM params p
          WHERE p.run_id = :run AND p.kind = 'param'
            AND p.module_id IN (SELECT id FROM sub s2 WHERE s2.top = s.top)) AS numel,
         (SELECT COALESCE(SUM(p.numel), 0) FROM params p
          WHERE p.run_id = :run AND p.kind = 'param' AND p.in_optimizer = 1
            AND p.module_id IN (SELECT id FROM sub s2 WHERE s2.top = s.top)) AS numel_opt
  FROM sub s GROUP BY s.top
),
calls AS (
  SELECT c.module_id, COUNT(*) AS n, COUNT(DISTINCT c.step) AS steps,
         MIN(c.step) AS first, MAX(c.step) AS last
  FROM module_calls c
  WHERE c.run_id = :run AND c.module_id IN (SELECT id FROM tops)
  GROUP BY c.module_id
)
SELECT 'error' AS severity,
       t.id AS module_id,
       t.path AS module,
       NULL AS param,
       COALESCE(c.first, t.first_step) AS first_step,
       COALESCE(c.last, t.first_step) AS last_step,
       printf('%s ''%s'' runs inside the forward of ''%s'' but is not registered under it: %s',
              t.type, t.path, COALESCE(NULLIF(t.caller, ''), '(model)'),
              CASE WHEN a.numel > 0 AND a.numel_opt = 0
                   THEN printf('its %,d parameter values are never trained, saved or moved with the model', a.numel)
                   WHEN a.numel > 0
                   THEN 'parameters(), state_dict() and to() do not see its parameters'
                   ELSE 'parameters(), state_dict() and to() do not see it' END) AS message,
       printf('called %d times in %d steps (steps %d..%d); %,d parameter values, %,d held by the optimizer; %d unregistered submodules',
              COALESCE(c.n, 0), COALESCE(c.steps, 0), COALESCE(c.first, t.first_step),
              COALESCE(c.last, t.first_step), a.numel, a.numel_opt, a.n_sub) AS evidence,
       NULL AS fix
FROM tops t
JOIN agg a ON a.top = t.id
LEFT JOIN calls c ON c.module_id = t.id
ORDER BY first_step, t.id
