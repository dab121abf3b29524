-- loss-not-decreasing: the mean training loss over the last :loss_window train steps is not at
-- least :loss_min_drop (relative) below the mean over the first :loss_window train steps
-- (windows shrink to half the run when it is shorter). Needs :min_steps train steps with a loss.
WITH
tl AS (
  SELECT step, loss, ROW_NUMBER() OVER (ORDER BY step) AS i, COUNT(*) OVER () AS n
  FROM steps WHERE run_id = :run AND phase = 'train' AND loss IS NOT NULL
),
par AS (SELECT MAX(n) AS n, min(CAST(:loss_window AS INTEGER), MAX(n) / 2) AS w FROM tl),
e AS (
  SELECT par.n, par.w,
         AVG(CASE WHEN tl.i <= par.w THEN tl.loss END) AS first_avg,
         AVG(CASE WHEN tl.i > par.n - par.w THEN tl.loss END) AS last_avg,
         MIN(tl.step) AS first, MAX(tl.step) AS last
  FROM tl CROSS JOIN par
)
SELECT 'warning' AS severity,
       root.id AS module_id,
       root.path AS module,
       NULL AS param,
       e.first AS first_step,
       e.last AS last_step,
       printf('the training loss %s: mean %.4g over the first %d train steps, %.4g over the last %d',
              CASE WHEN e.last_avg > e.first_avg + abs(e.first_avg) * 0.1 THEN 'increased'
                   ELSE 'did not decrease' END,
              e.first_avg, e.w, e.last_avg, e.w) AS message,
       printf('%d train steps with a loss (steps %d..%d); expected a drop of at least %g%%',
              e.n, e.first, e.last, 100.0 * :loss_min_drop) AS evidence,
       NULL AS fix
FROM e
LEFT JOIN modules root ON root.run_id = :run AND root.path = '' AND root.registered = 1
WHERE e.n >= :min_steps AND e.w >= 1
  AND e.last_avg > e.first_avg - abs(e.first_avg) * :loss_min_drop
