-- module-created-in-forward: modules built while another module's forward was running.
-- One finding per creating module; a module built once whose parameters the optimizer holds
-- (lazy initialisation) and modules without parameters are info, the rest are errors.
WITH
created AS (
  SELECT m.id, m.parent_id, m.creator_id, m.type, m.path, m.first_step
  FROM modules m WHERE m.run_id = :run AND m.created_in_forward = 1
),
tops AS (
  SELECT c.* FROM created c
  WHERE NOT EXISTS (SELECT 1 FROM created p WHERE p.id = c.parent_id)
),
per AS (
  SELECT t.creator_id, COUNT(*) AS instances, GROUP_CONCAT(DISTINCT t.type) AS types,
         MIN(t.first_step) AS first, MAX(t.first_step) AS last, MIN(t.path) AS example
  FROM tops t GROUP BY t.creator_id
),
pp AS (
  SELECT c.creator_id, COALESCE(SUM(p.numel), 0) AS numel,
         COALESCE(SUM(p.numel * p.in_optimizer), 0) AS numel_opt
  FROM created c JOIN params p ON p.run_id = :run AND p.module_id = c.id AND p.kind = 'param'
  GROUP BY c.creator_id
),
f AS (
  SELECT per.*, COALESCE(pp.numel, 0) AS numel, COALESCE(pp.numel_opt, 0) AS numel_opt,
         cr.path AS creator_path,
         CASE WHEN COALESCE(pp.numel, 0) = 0 THEN 'info'
              WHEN per.instances > 1 OR pp.numel_opt < pp.numel THEN 'error'
              ELSE 'info' END AS severity
  FROM per
  LEFT JOIN pp ON pp.creator_id IS per.creator_id
  LEFT JOIN modules cr ON cr.run_id = :run AND cr.id = per.creator_id
)
SELECT severity,
       creator_id AS module_id,
       creator_path AS module,
       NULL AS param,
       first AS first_step,
       last AS last_step,
       CASE
         WHEN numel = 0 THEN
           printf('the forward of ''%s'' builds a new %s on every call (%d built); it has no parameters, so only time and memory are lost',
                  COALESCE(NULLIF(creator_path, ''), '(model)'), types, instances)
         WHEN instances > 1 THEN
           printf('the forward of ''%s'' builds a new %s on every call (%d built): its parameters start from fresh random values each time and are never trained',
                  COALESCE(NULLIF(creator_path, ''), '(model)'), types, instances)
         WHEN numel_opt < numel THEN
           printf('the forward of ''%s'' built a %s that the optimizer does not hold: its %,d parameter values are never trained',
                  COALESCE(NULLIF(creator_path, ''), '(model)'), types, numel - numel_opt)
         ELSE
           printf('the forward of ''%s'' built a %s once (lazy initialisation); the optimizer holds its parameters',
                  COALESCE(NULLIF(creator_path, ''), '(model)'), types)
       END AS message,
       printf('%d modules built between steps %d and %d, e.g. ''%s''; %,d parameter values each, %,d of all %,d held by the optimizer',
              instances, first, last, example, numel / instances, numel_opt, numel) AS evidence,
       CASE WHEN numel = 0 THEN 'Build the module once in the constructor and register it (or use a function that needs no module).'
            ELSE NULL END AS fix
FROM f
ORDER BY first_step
