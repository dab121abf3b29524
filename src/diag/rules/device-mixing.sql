-- device-mixing: (1) parameters of the model on more than one device (at the last train
-- step); (2) a module whose forward moves data between devices on most steps (bytes per step);
-- (3) a module given inputs on another device than its parameters, without moving them itself.
WITH
last AS (
  SELECT MAX(s.step) AS step FROM param_stats s
  JOIN params p ON p.run_id = s.run_id AND p.id = s.param_id AND p.kind = 'param'
  WHERE s.run_id = :run
),
pd AS (
  SELECT s.device, COUNT(*) AS n, GROUP_CONCAT(p.name, ', ') AS names,
         MIN(p.module_id) AS module_id
  FROM param_stats s
  JOIN params p ON p.run_id = s.run_id AND p.id = s.param_id AND p.kind = 'param'
  JOIN modules m ON m.run_id = p.run_id AND m.id = p.module_id AND m.registered = 1
  WHERE s.run_id = :run AND s.step = (SELECT step FROM last)
  GROUP BY s.device
),
minority AS (SELECT * FROM pd ORDER BY n, device LIMIT 1),
nsteps AS (SELECT COUNT(*) AS n FROM steps WHERE run_id = :run),
tr AS (
  SELECT t.module_id, t.src, t.dst, COUNT(DISTINCT t.step) AS steps,
         SUM(t.bytes) AS bytes, SUM(t.count) AS moves,
         MIN(t.step) AS first, MAX(t.step) AS last
  FROM transfers t
  WHERE t.run_id = :run AND t.module_id IS NOT NULL
  GROUP BY t.module_id, t.src, t.dst
),
xin AS (
  SELECT c.module_id, c.in_device, c.param_device, COUNT(*) AS calls,
         COUNT(DISTINCT c.step) AS steps, MIN(c.step) AS first, MAX(c.step) AS last
  FROM module_calls c
  WHERE c.run_id = :run AND c.in_device IS NOT NULL AND c.param_device IS NOT NULL
    AND c.in_device <> c.param_device AND c.in_device <> 'mixed' AND c.param_device <> 'mixed'
    AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.run_id = :run AND t.module_id = c.module_id)
  GROUP BY c.module_id, c.in_device, c.param_device
)
SELECT 'warning' AS severity,
       mi.module_id AS module_id,
       m.path AS module,
       mi.names AS param,
       (SELECT step FROM last) AS first_step,
       (SELECT step FROM last) AS last_step,
       printf('the model''s parameters live on %d devices (%s): ''%s'' holds parameters on %s',
              (SELECT COUNT(*) FROM pd),
              (SELECT GROUP_CONCAT(device || ': ' || n, ', ') FROM pd),
              COALESCE(NULLIF(m.path, ''), '(model)'), mi.device) AS message,
       printf('at step %d, on %s: %s', (SELECT step FROM last), mi.device, substr(mi.names, 1, 300)) AS evidence,
       'Move the whole model with one ns_module_to(model, device) after every layer is registered.' AS fix
FROM minority mi
LEFT JOIN modules m ON m.run_id = :run AND m.id = mi.module_id
WHERE (SELECT COUNT(*) FROM pd) > 1
UNION ALL
SELECT 'warning',
       tr.module_id,
       m.path,
       NULL,
       tr.first,
       tr.last,
       printf('the forward of ''%s'' moves data %s -> %s on %d of %d steps (%s per step)',
              COALESCE(NULLIF(m.path, ''), '(model)'), tr.src, tr.dst, tr.steps, nsteps.n,
              CASE WHEN tr.bytes / tr.steps >= 1048576
                   THEN printf('%.1f MiB', tr.bytes / tr.steps / 1048576.0)
                   ELSE printf('%.1f KiB', tr.bytes / tr.steps / 1024.0) END),
       printf('%d moves, %,d bytes in all, steps %d..%d', tr.moves, tr.bytes, tr.first, tr.last),
       'Keep the module''s parameters and its inputs on one device: move the module (ns_module_to) instead of moving tensors inside its forward.'
FROM tr CROSS JOIN nsteps
LEFT JOIN modules m ON m.run_id = :run AND m.id = tr.module_id
WHERE nsteps.n > 0 AND tr.steps >= :transfer_min_frac * nsteps.n
UNION ALL
SELECT 'warning',
       xin.module_id,
       m.path,
       NULL,
       xin.first,
       xin.last,
       printf('%s ''%s'' receives inputs on %s while its parameters are on %s',
              m.type, COALESCE(NULLIF(m.path, ''), '(model)'), xin.in_device, xin.param_device),
       printf('%d calls in %d steps (%d..%d)', xin.calls, xin.steps, xin.first, xin.last),
       'Move the input batch to the model''s device once, before calling the model.'
FROM xin
LEFT JOIN modules m ON m.run_id = :run AND m.id = xin.module_id
ORDER BY 5
