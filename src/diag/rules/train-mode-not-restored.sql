-- train-mode-not-restored: Dropout / BatchNorm modules that ran in training mode in earlier
-- train steps, then in eval mode in later train steps (model.train() was not called again after
-- an evaluation). A module in eval mode during every train step is reported as info (a frozen
-- BatchNorm is sometimes intended). Only forwards with grad enabled count.
WITH
md AS (
  SELECT m.id, m.path, m.type FROM modules m
  WHERE m.run_id = :run
    AND (m.type LIKE '%Dropout%' OR m.type LIKE '%BatchNorm%' OR EXISTS (
           SELECT 1 FROM params b WHERE b.run_id = :run AND b.module_id = m.id
             AND b.kind = 'buffer' AND b.name LIKE '%running_mean'))
),
tc AS (
  SELECT c.module_id, c.step, c.training
  FROM module_calls c
  JOIN steps st ON st.run_id = c.run_id AND st.step = c.step AND st.phase = 'train'
  WHERE c.run_id = :run AND c.grad_enabled = 1 AND c.module_id IN (SELECT id FROM md)
),
per AS (
  SELECT module_id,
         MIN(CASE WHEN training = 1 THEN step END) AS first_train,
         COUNT(DISTINCT CASE WHEN training = 0 THEN step END) AS off_steps,
         MIN(CASE WHEN training = 0 THEN step END) AS first_off_any,
         MAX(CASE WHEN training = 0 THEN step END) AS last_off,
         COUNT(DISTINCT step) AS steps
  FROM tc GROUP BY module_id
),
f AS (
  SELECT per.*,
         (SELECT MIN(t.step) FROM tc t WHERE t.module_id = per.module_id AND t.training = 0
            AND t.step > per.first_train) AS first_off
  FROM per WHERE per.off_steps > 0
)
SELECT CASE WHEN f.first_train IS NULL THEN 'info' ELSE 'error' END AS severity,
       md.id AS module_id,
       md.path AS module,
       NULL AS param,
       COALESCE(f.first_off, f.first_off_any) AS first_step,
       f.last_off AS last_step,
       CASE WHEN f.first_train IS NULL THEN
              printf('%s ''%s'' ran in eval mode during all %d train steps (frozen on purpose?)',
                     md.type, md.path, f.steps)
            ELSE
              printf('%s ''%s'' ran in eval mode during %d train steps from step %d: training mode was not restored%s',
                     md.type, md.path, f.off_steps, f.first_off,
                     COALESCE((SELECT printf(' after the evaluation that ended at step %d', MAX(e.step))
                               FROM steps e WHERE e.run_id = :run AND e.phase = 'eval'
                                 AND e.step < f.first_off HAVING COUNT(*) > 0), ''))
       END AS message,
       printf('%d of %d train steps ran it in eval mode (steps %d..%d)%s',
              f.off_steps, f.steps, COALESCE(f.first_off, f.first_off_any), f.last_off,
              CASE WHEN f.first_train IS NOT NULL
                   THEN printf('; training mode from step %d', f.first_train) ELSE '' END) AS evidence,
       CASE WHEN f.first_train IS NULL
            THEN 'Nothing to do if intended; otherwise call ns_module_train(model, true) before the training loop.'
            ELSE NULL END AS fix
FROM f JOIN md ON md.id = f.module_id
WHERE f.first_train IS NULL OR f.first_off IS NOT NULL
ORDER BY first_step, md.id
