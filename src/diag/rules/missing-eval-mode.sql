-- missing-eval-mode: evaluation forwards that ran Dropout or BatchNorm in training mode, and
-- BatchNorm running statistics that changed during evaluation steps.
-- An evaluation forward is a call with grad disabled, or a call in an 'eval' step (no optimizer
-- step) through which no backward ran (so gradient accumulation steps do not count).
WITH
md AS (
  SELECT m.id, m.path, m.type,
         (m.type LIKE '%Norm%' OR EXISTS (
            SELECT 1 FROM params b WHERE b.run_id = :run AND b.module_id = m.id
              AND b.kind = 'buffer' AND b.name LIKE '%running_mean')) AS is_norm
  FROM modules m
  WHERE m.run_id = :run
    AND (m.type LIKE '%Dropout%' OR m.type LIKE '%BatchNorm%' OR EXISTS (
           SELECT 1 FROM params b WHERE b.run_id = :run AND b.module_id = m.id
             AND b.kind = 'buffer' AND b.name LIKE '%running_mean'))
),
evs AS (
  SELECT st.step FROM steps st
  WHERE st.run_id = :run AND st.phase = 'eval'
    AND NOT EXISTS (SELECT 1 FROM module_calls c
                    WHERE c.run_id = :run AND c.step = st.step AND c.bwd_us IS NOT NULL)
),
bad AS (
  SELECT c.module_id, COUNT(*) AS calls, COUNT(DISTINCT c.step) AS steps,
         MIN(c.step) AS first, MAX(c.step) AS last
  FROM module_calls c
  WHERE c.run_id = :run AND c.training = 1 AND c.module_id IN (SELECT id FROM md)
    AND (c.grad_enabled = 0 OR c.step IN (SELECT step FROM evs))
  GROUP BY c.module_id
),
drift AS (
  SELECT b.module_id, COUNT(DISTINCT s.step) AS steps, MIN(s.step) AS first,
         MAX(s.step) AS last, MAX(s.update_norm) AS max_change
  FROM param_stats s
  JOIN params b ON b.run_id = :run AND b.id = s.param_id AND b.kind = 'buffer'
                AND b.name LIKE '%running_%'
  WHERE s.run_id = :run AND s.update_norm > 0 AND s.step IN (SELECT step FROM evs)
  GROUP BY b.module_id
),
ids AS (SELECT module_id FROM bad UNION SELECT module_id FROM drift)
SELECT 'error' AS severity,
       md.id AS module_id,
       md.path AS module,
       NULL AS param,
       min(COALESCE(b.first, d.first), COALESCE(d.first, b.first)) AS first_step,
       max(COALESCE(b.last, d.last), COALESCE(d.last, b.last)) AS last_step,
       CASE
         WHEN b.module_id IS NULL THEN
           printf('%s ''%s'' changed its running statistics during %d evaluation steps',
                  md.type, md.path, d.steps)
         WHEN md.is_norm THEN
           printf('%s ''%s'' ran in training mode during evaluation: it normalised with batch statistics%s',
                  md.type, md.path,
                  CASE WHEN d.module_id IS NOT NULL
                       THEN printf(' and its running statistics changed on %d evaluation steps', d.steps)
                       ELSE '' END)
         ELSE
           printf('%s ''%s'' ran in training mode during evaluation: it dropped activations at random, so evaluation results are wrong and noisy',
                  md.type, md.path)
       END AS message,
       trim(CASE WHEN b.module_id IS NOT NULL
                 THEN printf('%d calls with training on in %d evaluation steps (%d..%d)',
                             b.calls, b.steps, b.first, b.last)
                 ELSE '' END ||
            CASE WHEN d.module_id IS NOT NULL
                 THEN printf('%srunning statistics moved on %d evaluation steps (%d..%d), by up to %.3g',
                             CASE WHEN b.module_id IS NOT NULL THEN '; ' ELSE '' END,
                             d.steps, d.first, d.last, d.max_change)
                 ELSE '' END) AS evidence,
       NULL AS fix
FROM ids
JOIN md ON md.id = ids.module_id
LEFT JOIN bad b ON b.module_id = ids.module_id
LEFT JOIN drift d ON d.module_id = ids.module_id
ORDER BY first_step, md.id
