-- state-dict-mismatch: a state_dict load that found missing keys, unexpected keys or shape
-- mismatches. Shape mismatches, or missing and unexpected keys together (names that differ,
-- e.g. by a 'module.' prefix), are errors; only missing keys: warning (those parameters keep
-- their initial values); only unexpected keys: info.
WITH
ld AS (
  SELECT e.id, e.step, e.module_id, e.detail, e.value, json_valid(e.detail) AS ok
  FROM events e
  WHERE e.run_id = :run AND e.kind = 'state_dict_load'
),
c AS (
  SELECT ld.*,
         CASE WHEN ok THEN json_extract(detail, '$.file') END AS file,
         CASE WHEN ok THEN json_extract(detail, '$.strict') END AS strict,
         CASE WHEN ok THEN COALESCE(json_array_length(detail, '$.missing'), 0) ELSE 0 END AS nm,
         CASE WHEN ok THEN COALESCE(json_array_length(detail, '$.unexpected'), 0) ELSE 0 END AS nu,
         CASE WHEN ok THEN COALESCE(json_array_length(detail, '$.shape_mismatch'), 0) ELSE 0 END AS ns
  FROM ld
)
SELECT CASE WHEN NOT c.ok OR c.ns > 0 OR (c.nm > 0 AND c.nu > 0) THEN 'error'
            WHEN c.nm > 0 THEN 'warning'
            ELSE 'info' END AS severity,
       c.module_id AS module_id,
       m.path AS module,
       NULL AS param,
       c.step AS first_step,
       c.step AS last_step,
       CASE WHEN NOT c.ok THEN
              printf('loading a state_dict into ''%s'' reported %d problems: %s',
                     COALESCE(NULLIF(m.path, ''), '(model)'), COALESCE(c.value, 0),
                     substr(replace(COALESCE(c.detail, ''), char(10), ' '), 1, 300))
            ELSE
              printf('%sloading ''%s'' into ''%s'': %d missing keys, %d unexpected keys, %d shape mismatches%s',
                     CASE WHEN c.strict THEN 'strict ' ELSE '' END, COALESCE(c.file, '?'),
                     COALESCE(NULLIF(m.path, ''), '(model)'), c.nm, c.nu, c.ns,
                     CASE WHEN c.ns > 0 THEN ': those tensors were not loaded'
                          WHEN c.nm > 0 AND c.nu > 0 THEN ': key names differ (a prefix such as ''module.''?)'
                          WHEN c.nm > 0 THEN ': the missing parameters keep their initial values'
                          ELSE ': the extra entries were ignored' END)
       END AS message,
       CASE WHEN NOT c.ok THEN ''
            ELSE trim(
              CASE WHEN c.nm > 0 THEN printf('missing: %s; ', substr((SELECT GROUP_CONCAT(value, ', ') FROM json_each(c.detail, '$.missing')), 1, 300)) ELSE '' END ||
              CASE WHEN c.nu > 0 THEN printf('unexpected: %s; ', substr((SELECT GROUP_CONCAT(value, ', ') FROM json_each(c.detail, '$.unexpected')), 1, 300)) ELSE '' END ||
              CASE WHEN c.ns > 0 THEN printf('shape mismatches: %s', substr((
                SELECT GROUP_CONCAT(CASE WHEN json_type(value) = 'object'
                                         THEN printf('%s (model %s, file %s)', json_extract(value, '$.key'),
                                                     json_extract(value, '$.expected'), json_extract(value, '$.got'))
                                         ELSE value END, ', ')
                FROM json_each(c.detail, '$.shape_mismatch')), 1, 300)) ELSE '' END,
              '; ')
       END AS evidence,
       CASE WHEN c.ns > 0 THEN 'The checkpoint was saved from a different architecture: rebuild the model with the same sizes, or skip those keys on purpose (non-strict load) and retrain them.'
            WHEN c.nm > 0 AND c.nu > 0 THEN 'Rename the keys (strip or add the prefix) so the file''s names match the model''s state_dict.'
            ELSE NULL END AS fix
FROM c
LEFT JOIN modules m ON m.run_id = :run AND m.id = c.module_id
WHERE NOT c.ok AND COALESCE(c.value, 1) > 0 OR c.nm + c.nu + c.ns > 0
ORDER BY c.id
