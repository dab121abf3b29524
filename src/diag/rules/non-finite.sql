-- non-finite: the first step and the first module whose output held NaN/Inf (the innermost
-- call with a non-finite output in that step), or the first non-finite gradient/weight seen.
WITH
calls AS (
  SELECT c.step, c.seq, c.module_id, c.out_nonfinite
  FROM module_calls c WHERE c.run_id = :run AND c.out_nonfinite > 0
),
leaf AS (
  SELECT c.* FROM calls c
  WHERE c.step = (SELECT MIN(step) FROM calls)
    AND NOT EXISTS (SELECT 1 FROM module_calls k
                    WHERE k.run_id = :run AND k.step = c.step AND k.caller_id = c.module_id
                      AND k.out_nonfinite > 0)
  ORDER BY c.seq LIMIT 1
),
ev AS (
  SELECT e.step, e.module_id, e.param_id, e.detail, e.value FROM events e
  WHERE e.run_id = :run AND e.kind = 'nonfinite'
  ORDER BY COALESCE(e.step, 9e18), e.id LIMIT 1
),
pn AS (
  SELECT s.step, s.param_id, s.nonfinite FROM param_stats s
  JOIN params p ON p.run_id = s.run_id AND p.id = s.param_id
  WHERE s.run_id = :run AND s.nonfinite > 0
  ORDER BY s.step, p.kind = 'buffer', s.param_id LIMIT 1
),
cand AS (
  SELECT leaf.step, 0 AS pri, leaf.module_id, NULL AS param_id,
         printf('the output of %s ''%s'' held %d NaN/Inf values', m.type,
                COALESCE(NULLIF(m.path, ''), '(model)'), leaf.out_nonfinite) AS what
  FROM leaf LEFT JOIN modules m ON m.run_id = :run AND m.id = leaf.module_id
  UNION ALL
  SELECT ev.step, 1, COALESCE(ev.module_id, p.module_id), ev.param_id,
         COALESCE(ev.detail, 'a NaN/Inf value') ||
           CASE WHEN m.id IS NOT NULL THEN printf(' (in ''%s'')', COALESCE(NULLIF(m.path, ''), '(model)')) ELSE '' END
  FROM ev
  LEFT JOIN params p ON p.run_id = :run AND p.id = ev.param_id
  LEFT JOIN modules m ON m.run_id = :run AND m.id = COALESCE(ev.module_id, p.module_id)
  UNION ALL
  SELECT pn.step, 2, p.module_id, pn.param_id,
         printf('%s ''%s'' (weights or gradient) held %d NaN/Inf values', p.kind, p.name, pn.nonfinite)
  FROM pn JOIN params p ON p.run_id = :run AND p.id = pn.param_id
),
first AS (SELECT * FROM cand ORDER BY COALESCE(step, 9e18), pri LIMIT 1)
SELECT 'error' AS severity,
       f.module_id AS module_id,
       m.path AS module,
       p.name AS param,
       f.step AS first_step,
       (SELECT MAX(step) FROM (SELECT step FROM calls UNION ALL
                               SELECT s.step FROM param_stats s
                               WHERE s.run_id = :run AND s.nonfinite > 0)) AS last_step,
       printf('first non-finite value at step %s: %s', COALESCE(f.step, '?'), replace(f.what, char(10), ' ')) AS message,
       printf('%d module outputs held NaN/Inf in %d steps; %d parameter/buffer rows held NaN/Inf in %d steps',
              (SELECT COUNT(*) FROM calls), (SELECT COUNT(DISTINCT step) FROM calls),
              (SELECT COUNT(*) FROM param_stats s WHERE s.run_id = :run AND s.nonfinite > 0),
              (SELECT COUNT(DISTINCT step) FROM param_stats s WHERE s.run_id = :run AND s.nonfinite > 0)) AS evidence,
       NULL AS fix
FROM first f
LEFT JOIN modules m ON m.run_id = :run AND m.id = f.module_id
LEFT JOIN params p ON p.run_id = :run AND p.id = f.param_id
