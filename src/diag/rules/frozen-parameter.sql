-- frozen-parameter: parameters whose weights never changed over the run's train steps, with
-- the reason: requires_grad off (info), not held by the optimizer (error), no gradient ever
-- reached them (error), learning rate 0 (warning), or none of these (warning).
-- Parameters of modules that ran unregistered inside a forward, or were built inside one, are
-- left to unregistered-module and module-created-in-forward. One finding per module and reason.
-- A bias of a layer feeding a BatchNorm gets no gradient by construction: info ('norm_bias').
WITH RECURSIVE
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
chain (id, cur, depth) AS (
  SELECT id, id, 0 FROM modules WHERE run_id = :run AND registered = 0
  UNION ALL
  SELECT ch.id, m.parent_id, ch.depth + 1
  FROM chain ch
  JOIN modules m ON m.run_id = :run AND m.id = ch.cur
  JOIN modules p ON p.run_id = :run AND p.id = m.parent_id AND p.registered = 0
  WHERE ch.depth < 64
),
judged AS (
  SELECT id FROM modules WHERE run_id = :run AND registered = 1
  UNION
  -- a separate model run from the top level (not inside another module's forward)
  SELECT ch.id FROM chain ch JOIN modules t ON t.run_id = :run AND t.id = ch.cur
  WHERE t.parent_id IS NULL AND t.created_in_forward = 0
),
any_opt AS (
  SELECT EXISTS (SELECT 1 FROM params WHERE run_id = :run AND kind = 'param' AND in_optimizer = 1) AS yes
),
ps AS (
  SELECT s.param_id, COUNT(*) AS steps, MIN(s.step) AS first, MAX(s.step) AS last,
         MAX(COALESCE(s.update_norm, 0)) AS max_upd,
         COUNT(s.grad_norm) AS with_grad, MAX(COALESCE(s.grad_norm, 0)) AS max_grad
  FROM param_stats s
  JOIN steps st ON st.run_id = s.run_id AND st.step = s.step AND st.phase = 'train'
  WHERE s.run_id = :run
  GROUP BY s.param_id
),
frozen AS (
  SELECT p.id, p.name, p.module_id, p.numel, p.lr, ps.steps, ps.first, ps.last, ps.with_grad,
         ps.max_grad,
         CASE WHEN p.requires_grad = 0 THEN 'requires_grad'
              WHEN p.in_optimizer = 0 THEN 'optimizer'
              WHEN (p.name = 'bias' OR p.name LIKE '%.bias')
                   AND p.module_id IN (SELECT module_id FROM norm_fed) THEN 'norm_bias'
              WHEN ps.max_grad = 0 THEN 'no_grad'
              WHEN p.lr = 0 THEN 'lr'
              ELSE 'unknown' END AS reason
  FROM params p JOIN ps ON ps.param_id = p.id
  WHERE p.run_id = :run AND p.kind = 'param'
    AND p.module_id IN (SELECT id FROM judged)
    AND ps.steps >= :frozen_min_steps AND ps.max_upd = 0
),
g AS (
  SELECT f.module_id, f.reason, GROUP_CONCAT(f.name, ', ') AS names, COUNT(*) AS n,
         SUM(f.numel) AS numel, MIN(f.first) AS first, MAX(f.last) AS last, MAX(f.steps) AS steps,
         MAX(f.max_grad) AS max_grad, SUM(f.with_grad) AS with_grad, MAX(f.lr) AS lr
  FROM frozen f
  WHERE f.reason <> 'optimizer' OR (SELECT yes FROM any_opt)
  GROUP BY f.module_id, f.reason
)
SELECT CASE g.reason WHEN 'requires_grad' THEN 'info'
                     WHEN 'norm_bias' THEN 'info'
                     WHEN 'optimizer' THEN 'error'
                     WHEN 'no_grad' THEN 'error'
                     ELSE 'warning' END AS severity,
       g.module_id AS module_id,
       m.path AS module,
       g.names AS param,
       g.first AS first_step,
       g.last AS last_step,
       printf('%s of %s ''%s'' never changed in %d train steps: %s',
              g.names, m.type, COALESCE(NULLIF(m.path, ''), '(model)'), g.steps,
              CASE g.reason
                WHEN 'requires_grad' THEN 'requires_grad is off (frozen on purpose?)'
                WHEN 'norm_bias' THEN 'the normalisation right after the layer subtracts the batch mean, so this bias gets no gradient and has no effect'
                WHEN 'optimizer' THEN printf('the optimizer does not hold %s', CASE WHEN g.n = 1 THEN 'it' ELSE 'them' END)
                WHEN 'no_grad' THEN printf('no gradient ever reached %s (the chain is broken between %s and the loss)',
                                           CASE WHEN g.n = 1 THEN 'it' ELSE 'them' END,
                                           CASE WHEN g.n = 1 THEN 'it' ELSE 'them' END)
                WHEN 'lr' THEN printf('%s learning rate is 0', CASE WHEN g.n = 1 THEN 'its' ELSE 'their' END)
                ELSE printf('%s gradients, the optimizer holds %s with lr %g, yet the optimizer step never moved %s',
                            CASE WHEN g.n = 1 THEN 'it gets' ELSE 'they get' END,
                            CASE WHEN g.n = 1 THEN 'it' ELSE 'them' END, g.lr,
                            CASE WHEN g.n = 1 THEN 'it' ELSE 'them' END)
              END) AS message,
       printf('%,d values; update norm 0 on all %d train steps (%d..%d); %s',
              g.numel, g.steps, g.first, g.last,
              CASE WHEN g.with_grad = 0 THEN 'no .grad on any step'
                   ELSE printf('gradient norm up to %.3g', g.max_grad) END) AS evidence,
       CASE g.reason
         WHEN 'requires_grad' THEN 'Nothing to do if the freeze is intended; otherwise turn requires_grad back on (ns_module_requires_grad) before building the optimizer.'
         WHEN 'norm_bias' THEN 'Create the layer without a bias (bias=False): the normalisation''s own shift (beta) does that job.'
         WHEN 'optimizer' THEN 'Pass these parameters to the optimizer: build it from the whole model''s parameters (ns_named_parameters of the root) after every layer is registered.'
         WHEN 'no_grad' THEN 'Find where the gradient stops between these parameters and the loss: a detach, a copy into a new tensor, or a no-grad section inside a forward.'
         WHEN 'lr' THEN 'Give their parameter group a learning rate above 0 (check the schedule, too).'
         ELSE 'Check that the optimizer step runs after backward and that nothing restores the weights afterwards.'
       END AS fix
FROM g JOIN modules m ON m.run_id = :run AND m.id = g.module_id
ORDER BY first_step, g.module_id
