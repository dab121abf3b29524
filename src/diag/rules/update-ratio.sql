-- update-ratio: the optimizer's update norm / weight norm per train step.
-- Hard bounds (SageMaker Debugger's defaults): a ratio above :ratio_max, or above 0 and below
-- :ratio_min, on at least :ratio_hard_steps train steps (warning). Steps without any update
-- (ratio 0) do not count; never-updated parameters are frozen-parameter's.
-- Soft band: outside [:ratio_low, :ratio_high] (around the usual ~1e-3) on more than
-- :ratio_soft_frac of the train steps after the first :min_steps: warning for weight matrices,
-- info for 1-D parameters (biases and norm scales move relatively more under Adam).
-- The bias of a layer feeding a BatchNorm is left out: it gets no gradient by construction
-- (vanishing-gradient reports it as info).
WITH
-- Modules whose output goes straight into a BatchNorm/InstanceNorm (the next call under the
-- same caller on the last train step): the norm subtracts the per-feature batch mean, so the
-- bias of such a module gets no gradient by construction (it is redundant, not broken).
norm_fed AS (
  SELECT c.module_id, MIN(nm.path) AS norm_path, MIN(nm.type) AS norm_type
  FROM module_calls c
  JOIN module_calls nx ON nx.run_id = c.run_id AND nx.step = c.step AND nx.seq = c.seq + 1
                       AND nx.caller_id IS c.caller_id
  JOIN modules nm ON nm.run_id = nx.run_id AND nm.id = nx.module_id
                  AND (nm.type LIKE '%BatchNorm%' OR nm.type LIKE '%InstanceNorm%')
  WHERE c.run_id = :run
    AND c.step = (SELECT MAX(step) FROM steps WHERE run_id = :run AND phase = 'train')
  GROUP BY c.module_id
),
ts AS (
  SELECT step, ROW_NUMBER() OVER (ORDER BY step) AS i, COUNT(*) OVER () AS n
  FROM steps WHERE run_id = :run AND phase = 'train'
),
pr AS (
  SELECT p.id, p.name, p.module_id, instr(p.shape, 'x') > 0 AS matrix FROM params p
  JOIN modules m ON m.run_id = p.run_id AND m.id = p.module_id AND m.registered = 1
  WHERE p.run_id = :run AND p.kind = 'param' AND p.requires_grad = 1 AND p.in_optimizer = 1
    AND NOT ((p.name = 'bias' OR p.name LIKE '%.bias')
             AND p.module_id IN (SELECT module_id FROM norm_fed))
),
st AS (
  SELECT s.param_id, s.step, ts.i, s.ratio FROM param_stats s
  JOIN ts ON ts.step = s.step
  WHERE s.run_id = :run AND s.ratio IS NOT NULL AND s.param_id IN (SELECT id FROM pr)
),
hard AS (
  SELECT param_id, COUNT(*) AS n, SUM(ratio > :ratio_max) AS n_hi,
         SUM(ratio > 0 AND ratio < :ratio_min) AS n_lo, MIN(step) AS first, MAX(step) AS last,
         MAX(ratio) AS hi, MIN(ratio) AS lo
  FROM st WHERE ratio > :ratio_max OR (ratio > 0 AND ratio < :ratio_min)
  GROUP BY param_id HAVING COUNT(*) >= :ratio_hard_steps
),
soft AS (
  SELECT param_id, COUNT(*) AS n,
         SUM(ratio < :ratio_low OR ratio > :ratio_high) AS out,
         SUM(ratio > :ratio_high) AS n_hi, MIN(step) AS first, MAX(step) AS last,
         AVG(ratio) AS mean
  FROM st WHERE i > :min_steps AND ratio > 0
  GROUP BY param_id
  HAVING COUNT(*) >= :min_steps AND SUM(ratio < :ratio_low OR ratio > :ratio_high) > :ratio_soft_frac * COUNT(*)
)
SELECT 'warning' AS severity,
       pr.module_id AS module_id,
       m.path AS module,
       pr.name AS param,
       h.first AS first_step,
       h.last AS last_step,
       printf('%s of ''%s'': update/weight ratio %s on %d train steps',
              pr.name, COALESCE(NULLIF(m.path, ''), '(model)'),
              CASE WHEN h.n_hi >= h.n_lo THEN printf('above %g (updates larger than the weights)', :ratio_max)
                   ELSE printf('below %g (the weights barely move)', :ratio_min) END,
              h.n) AS message,
       printf('ratio from %.3g to %.3g, steps %d..%d: %d above %g, %d below %g',
              h.lo, h.hi, h.first, h.last, h.n_hi, :ratio_max, h.n_lo, :ratio_min) AS evidence,
       CASE WHEN h.n_hi >= h.n_lo THEN 'Lower the learning rate (or add warm-up / gradient clipping).'
            ELSE 'Raise the learning rate, or look for vanishing gradients upstream.' END AS fix
FROM hard h JOIN pr ON pr.id = h.param_id
JOIN modules m ON m.run_id = :run AND m.id = pr.module_id
UNION ALL
SELECT CASE WHEN pr.matrix THEN 'warning' ELSE 'info' END,
       pr.module_id,
       m.path,
       pr.name,
       s.first,
       s.last,
       printf('%s of ''%s'': update/weight ratio %s the usual range [%g, %g] on %d of %d train steps',
              pr.name, COALESCE(NULLIF(m.path, ''), '(model)'),
              CASE WHEN s.n_hi * 2 >= s.out THEN 'mostly above' ELSE 'mostly below' END,
              :ratio_low, :ratio_high, s.out, s.n),
       printf('mean ratio %.3g over steps %d..%d; %d steps above %g, %d below %g',
              s.mean, s.first, s.last, s.n_hi, :ratio_high, s.out - s.n_hi, :ratio_low),
       CASE WHEN s.n_hi * 2 >= s.out THEN 'The learning rate is probably too high for this parameter: lower it or give it its own parameter group.'
            ELSE 'The learning rate is probably too low for this parameter (or its gradient vanishes).' END
FROM soft s JOIN pr ON pr.id = s.param_id
JOIN modules m ON m.run_id = :run AND m.id = pr.module_id
WHERE s.param_id NOT IN (SELECT param_id FROM hard)
ORDER BY 5
