-- vanishing-gradient: parameters whose gradient RMS (grad_norm / sqrt(numel), an upper bound
-- of the mean absolute value) stayed below :grad_rms_min on every one of the last
-- :grad_window train steps. Parameters that never got a gradient at all are frozen-parameter's.
-- Squares are compared so the SQL needs no sqrt(). One finding per module; the bias of a
-- layer feeding a BatchNorm is reported as info (redundant bias, see norm_fed).
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
  SELECT step, ROW_NUMBER() OVER (ORDER BY step DESC) AS rk, COUNT(*) OVER () AS n
  FROM steps WHERE run_id = :run AND phase = 'train'
),
pr AS (
  SELECT p.id, p.name, p.module_id, p.numel FROM params p
  JOIN modules m ON m.run_id = p.run_id AND m.id = p.module_id AND m.registered = 1
  WHERE p.run_id = :run AND p.kind = 'param' AND p.requires_grad = 1 AND p.numel > 0
),
ever AS (
  SELECT s.param_id FROM param_stats s
  WHERE s.run_id = :run AND s.grad_norm > 0 AND s.param_id IN (SELECT id FROM pr)
  GROUP BY s.param_id
),
win AS (
  SELECT s.param_id, COUNT(s.grad_norm) AS n, MAX(s.grad_norm * s.grad_norm / pr.numel) AS max_ms,
         MAX(s.grad_norm) AS max_norm, pr.numel,
         MIN(ts.step) AS first, MAX(ts.step) AS last
  FROM param_stats s
  JOIN ts ON ts.step = s.step AND ts.rk <= :grad_window
  JOIN pr ON pr.id = s.param_id
  WHERE s.run_id = :run AND s.param_id IN (SELECT param_id FROM ever)
  GROUP BY s.param_id
),
hit AS (
  SELECT pr.module_id, pr.name, win.*,
         (nf.module_id IS NOT NULL AND (pr.name = 'bias' OR pr.name LIKE '%.bias')) AS norm_bias,
         nf.norm_path, nf.norm_type
  FROM win JOIN pr ON pr.id = win.param_id
  LEFT JOIN norm_fed nf ON nf.module_id = pr.module_id
  WHERE (SELECT MAX(n) FROM ts) >= :min_steps
    AND win.n * 2 >= min(:grad_window, (SELECT MAX(n) FROM ts))
    AND win.max_ms < :grad_rms_min * :grad_rms_min
)
SELECT CASE WHEN hit.norm_bias THEN 'info' ELSE 'warning' END AS severity,
       hit.module_id AS module_id,
       m.path AS module,
       GROUP_CONCAT(hit.name, ', ') AS param,
       MIN(hit.first) AS first_step,
       MAX(hit.last) AS last_step,
       CASE WHEN hit.norm_bias THEN
         printf('%s of %s ''%s'' gets no gradient: the %s ''%s'' right after it subtracts the batch mean, so this bias has no effect',
                GROUP_CONCAT(hit.name, ', '), m.type, COALESCE(NULLIF(m.path, ''), '(model)'),
                hit.norm_type, hit.norm_path)
       ELSE
         printf('gradients of %s ''%s'' have vanished: RMS below %g on each of the last %d train steps (%s)',
                m.type, COALESCE(NULLIF(m.path, ''), '(model)'), :grad_rms_min, MAX(hit.n),
                GROUP_CONCAT(hit.name, ', '))
       END AS message,
       GROUP_CONCAT(printf('%s: gradient norm at most %.3g over %,d values', hit.name, hit.max_norm, hit.numel), '; ') AS evidence,
       CASE WHEN hit.norm_bias THEN 'Create the layer without a bias (bias=False): the normalisation''s own shift (beta) does that job.'
            ELSE NULL END AS fix
FROM hit JOIN modules m ON m.run_id = :run AND m.id = hit.module_id
GROUP BY hit.module_id, hit.norm_bias
ORDER BY first_step
