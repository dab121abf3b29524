-- zero-trainable-parameters: train steps ran, but no parameter both requires grad and is held
-- by the optimizer: the run cannot learn anything.
WITH
t AS (
  SELECT COUNT(*) AS n, MIN(step) AS first, MAX(step) AS last
  FROM steps WHERE run_id = :run AND phase = 'train'
),
p AS (
  SELECT COUNT(*) AS n, COALESCE(SUM(numel), 0) AS numel,
         COALESCE(SUM(CASE WHEN requires_grad = 1 THEN numel END), 0) AS rg,
         COALESCE(SUM(CASE WHEN in_optimizer = 1 THEN numel END), 0) AS opt,
         COALESCE(SUM(CASE WHEN requires_grad = 1 AND in_optimizer = 1 THEN numel END), 0) AS trainable
  FROM params WHERE run_id = :run AND kind = 'param'
)
SELECT 'error' AS severity,
       root.id AS module_id,
       root.path AS module,
       NULL AS param,
       t.first AS first_step,
       t.last AS last_step,
       printf('the model has no trainable parameters: %s',
              CASE WHEN p.n = 0 THEN 'it has no parameters at all'
                   WHEN p.rg = 0 THEN 'every parameter has requires_grad off'
                   WHEN p.opt = 0 THEN 'the optimizer holds none of them'
                   ELSE 'none both requires grad and is held by the optimizer' END) AS message,
       printf('%d train steps; %d parameters with %,d values: %,d require grad, %,d held by the optimizer',
              t.n, p.n, p.numel, p.rg, p.opt) AS evidence,
       NULL AS fix
FROM t CROSS JOIN p
LEFT JOIN modules root ON root.run_id = :run AND root.path = '' AND root.registered = 1
WHERE t.n > 0 AND p.trainable = 0
