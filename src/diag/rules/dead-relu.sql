-- dead-relu: a ReLU whose outputs were zero for every sample of the batch in more than
-- :dead_relu_frac of its units, on average over its last :dead_relu_window sampled train calls.
WITH
rc AS (
  SELECT c.module_id, c.step, c.dead_frac,
         ROW_NUMBER() OVER (PARTITION BY c.module_id ORDER BY c.step DESC, c.seq DESC) AS rk
  FROM module_calls c
  JOIN modules m ON m.run_id = c.run_id AND m.id = c.module_id AND m.type LIKE 'ReLU%'
  WHERE c.run_id = :run AND c.phase = 'train' AND c.training = 1 AND c.dead_frac IS NOT NULL
),
w AS (
  SELECT module_id, COUNT(*) AS n, AVG(dead_frac) AS avg, MIN(dead_frac) AS lo,
         MAX(dead_frac) AS hi, MIN(step) AS first, MAX(step) AS last
  FROM rc WHERE rk <= :dead_relu_window GROUP BY module_id
)
SELECT 'warning' AS severity,
       w.module_id AS module_id,
       m.path AS module,
       NULL AS param,
       w.first AS first_step,
       w.last AS last_step,
       printf('%s ''%s'' is dying: on average %.0f%% of its units output zero for the whole batch over its last %d train calls',
              m.type, m.path, 100.0 * w.avg, w.n) AS message,
       printf('dead fraction %.2f..%.2f (mean %.2f) over steps %d..%d; limit %g',
              w.lo, w.hi, w.avg, w.first, w.last, :dead_relu_frac) AS evidence,
       NULL AS fix
FROM w JOIN modules m ON m.run_id = :run AND m.id = w.module_id
WHERE w.n >= min(:dead_relu_window, :min_steps) AND w.avg > :dead_relu_frac
ORDER BY first_step
