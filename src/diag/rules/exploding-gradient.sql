-- exploding-gradient: (1) gradient L2 norms above :grad_norm_max; (2) a window of
-- :grad_window train steps whose mean gradient norm is :grad_growth times the mean over all
-- earlier windows (the first window, where initial transients live, is not used). One finding
-- per module and kind. The bias of a layer feeding a BatchNorm is left out: its gradient is
-- rounding noise (see norm_fed), whose windows can jump by any factor.
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
  SELECT step, (ROW_NUMBER() OVER (ORDER BY step) - 1) / CAST(:grad_window AS INTEGER) AS win
  FROM steps WHERE run_id = :run AND phase = 'train'
),
pr AS (
  SELECT p.id, p.name, p.module_id FROM params p
  JOIN modules m ON m.run_id = p.run_id AND m.id = p.module_id AND m.registered = 1
  WHERE p.run_id = :run AND p.kind = 'param'
    AND NOT ((p.name = 'bias' OR p.name LIKE '%.bias')
             AND p.module_id IN (SELECT module_id FROM norm_fed))
),
big AS (
  SELECT s.param_id, COUNT(*) AS n, MIN(s.step) AS first, MAX(s.step) AS last,
         MAX(s.grad_norm) AS peak
  FROM param_stats s JOIN ts ON ts.step = s.step
  WHERE s.run_id = :run AND s.grad_norm > :grad_norm_max AND s.param_id IN (SELECT id FROM pr)
  GROUP BY s.param_id
),
w AS (
  SELECT s.param_id, ts.win, AVG(s.grad_norm) AS g, SUM(s.grad_norm) AS sg,
         COUNT(s.grad_norm) AS n, MIN(ts.step) AS first, MAX(ts.step) AS last
  FROM param_stats s JOIN ts ON ts.step = s.step
  WHERE s.run_id = :run AND s.grad_norm IS NOT NULL AND ts.win >= 1
    AND s.param_id IN (SELECT id FROM pr)
  GROUP BY s.param_id, ts.win
),
c AS (
  SELECT w.*,
         SUM(sg) OVER prev / SUM(n) OVER prev AS earlier
  FROM w
  WINDOW prev AS (PARTITION BY param_id ORDER BY win ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
grow AS (
  SELECT c.*, ROW_NUMBER() OVER (PARTITION BY param_id ORDER BY win) AS k
  FROM c
  WHERE c.earlier > 0 AND c.g >= :grad_growth * c.earlier AND c.n * 2 >= :grad_window
),
hits AS (
  SELECT 'big' AS kind, param_id, first, last, peak AS a, n AS b FROM big
  UNION ALL
  SELECT 'grow', param_id, first, last, g / earlier, g FROM grow WHERE k = 1
)
SELECT 'warning' AS severity,
       pr.module_id AS module_id,
       m.path AS module,
       GROUP_CONCAT(pr.name, ', ') AS param,
       MIN(h.first) AS first_step,
       MAX(h.last) AS last_step,
       CASE h.kind
         WHEN 'big' THEN
           printf('gradients of %s ''%s'' exploded: norm up to %.3g (limit %g) from step %d',
                  m.type, COALESCE(NULLIF(m.path, ''), '(model)'), MAX(h.a), :grad_norm_max, MIN(h.first))
         ELSE
           printf('gradients of %s ''%s'' grew %.3gx within %d train steps (steps %d..%d)',
                  m.type, COALESCE(NULLIF(m.path, ''), '(model)'), MAX(h.a),
                  CAST(:grad_window AS INTEGER), MIN(h.first), MAX(h.last))
       END AS message,
       GROUP_CONCAT(CASE h.kind
                      WHEN 'big' THEN printf('%s: norm above %g on %d steps, peak %.3g', pr.name, :grad_norm_max, h.b, h.a)
                      ELSE printf('%s: window mean %.3g = %.3gx the earlier mean', pr.name, h.b, h.a)
                    END, '; ') AS evidence,
       NULL AS fix
FROM hits h
JOIN pr ON pr.id = h.param_id
JOIN modules m ON m.run_id = :run AND m.id = pr.module_id
GROUP BY pr.module_id, h.kind
ORDER BY first_step
