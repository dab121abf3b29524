-- nnscope recording schema (SQLite 3, WAL).
--
-- One file may hold several runs; every table carries run_id. Ids of modules and
-- parameters are the engine's own ids (unique within a process), so a row in
-- module_calls or param_stats joins to modules / params on (run_id, id).
-- Steps are numbered by the engine: every ns_step_end() closes one step, train
-- or eval, and step numbers grow by one per run.
-- Times: wall-clock values are unix seconds (REAL); durations are microseconds.
-- Devices are written as text: 'cpu', 'cuda:0', and 'mixed' where several apply.

PRAGMA user_version = 1;

-- Interned strings (kernel names), stored once per file.
CREATE TABLE IF NOT EXISTS strings (
  id INTEGER PRIMARY KEY,
  s  TEXT NOT NULL UNIQUE
);

-- One row per recorded run.
CREATE TABLE IF NOT EXISTS runs (
  id             INTEGER PRIMARY KEY,
  started_at     REAL NOT NULL,            -- unix seconds
  ended_at       REAL,                     -- NULL while running or after a kill
  heartbeat_at   REAL,                     -- last writer commit: at least every second while
                                           -- the process lives; 'running' with a stale
                                           -- heartbeat = killed
  status         TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'finished', 'interrupted', 'failed')),
  status_detail  TEXT,                     -- e.g. 'SIGINT', or the engine's error message
  command        TEXT,                     -- argv joined by spaces
  host           TEXT,
  pid            INTEGER,
  engine_version TEXT,
  devices        TEXT,                     -- e.g. 'cpu' or 'cpu,cuda:0 (NVIDIA H200)'
  queue_policy   TEXT NOT NULL DEFAULT 'block' CHECK (queue_policy IN ('block', 'drop')),
  dropped        INTEGER NOT NULL DEFAULT 0, -- records dropped by a full queue ('drop' policy)
  sample_every   INTEGER NOT NULL DEFAULT 1, -- module_calls activation stats every N steps
  last_step      INTEGER,                  -- highest step committed
  cupti_status   TEXT,                     -- 'on', 'off', or why GPU timings are absent
  record_error   TEXT                      -- why recording stopped early (disk full, I/O error):
                                           -- rows after last_step are missing; NULL: it did not
);

-- The module tree. Registered modules have a dotted path under the model
-- ('' for the root, 'fc1', 'layers.0'). Unregistered modules (run by ns_call
-- but not reachable from the model) have registered = 0, parent_id = the module
-- whose forward called them, and a path like 'net.<unregistered Linear#7>'.
CREATE TABLE IF NOT EXISTS modules (
  run_id             INTEGER NOT NULL REFERENCES runs (id),
  id                 INTEGER NOT NULL,
  parent_id          INTEGER,              -- NULL for the root
  path               TEXT NOT NULL,
  type               TEXT NOT NULL,        -- 'Linear', 'Sequential', user type names
  describe           TEXT,                 -- repr line: 'Linear(in_features=784, out_features=256, bias=True)'
  registered         INTEGER NOT NULL,     -- 1: reachable from the model's children
  created_in_forward INTEGER NOT NULL DEFAULT 0,
  creator_id         INTEGER,              -- module whose forward was running at creation
  n_params           INTEGER NOT NULL DEFAULT 0, -- numel of its own parameters (not children)
  first_step         INTEGER,              -- step at which it was first seen
  PRIMARY KEY (run_id, id)
) WITHOUT ROWID;

-- Parameters and buffers.
CREATE TABLE IF NOT EXISTS params (
  run_id        INTEGER NOT NULL REFERENCES runs (id),
  id            INTEGER NOT NULL,
  module_id     INTEGER NOT NULL,
  name          TEXT NOT NULL,             -- full dotted name: 'fc1.weight', 'bn1.running_mean'
  kind          TEXT NOT NULL DEFAULT 'param' CHECK (kind IN ('param', 'buffer')),
  shape         TEXT NOT NULL,             -- '256x784'
  numel         INTEGER NOT NULL,
  requires_grad INTEGER NOT NULL,
  in_optimizer  INTEGER NOT NULL,          -- held by the recorded optimizer
  lr            REAL,                      -- learning rate of its parameter group (NULL if none)
  PRIMARY KEY (run_id, id)
) WITHOUT ROWID;

-- One row per step (train or eval).
CREATE TABLE IF NOT EXISTS steps (
  run_id      INTEGER NOT NULL REFERENCES runs (id),
  step        INTEGER NOT NULL,
  phase       TEXT NOT NULL CHECK (phase IN ('train', 'eval')),
  epoch       INTEGER,
  loss        REAL,
  lr          REAL,
  samples     INTEGER,                     -- batch size seen by the step
  wall_time   REAL NOT NULL,               -- unix seconds at the step end
  duration_us REAL,                        -- since the previous step end
  scope_bytes INTEGER,                     -- step-arena bytes in use at the step end (activations,
                                           -- tape; CPU memory, the tensors' data on the CPU)
  dev_mem_in_use INTEGER,                  -- device caching allocator at the step end (bytes):
  dev_mem_cached INTEGER,                  --   in use, held in its free lists, and the peak;
  dev_mem_peak   INTEGER,                  --   NULL when no device backend is in use
  PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

-- Per train step and parameter: the optimizer's view.
CREATE TABLE IF NOT EXISTS param_stats (
  run_id       INTEGER NOT NULL,
  step         INTEGER NOT NULL,
  param_id     INTEGER NOT NULL,
  grad_norm    REAL,                       -- L2 norm of .grad at the optimizer step (NULL: no grad)
  update_norm  REAL,                       -- L2 norm of (w_after - w_before)
  weight_norm  REAL,                       -- L2 norm of w after the step
  ratio        REAL,                       -- update_norm / weight_norm
  nonfinite    INTEGER NOT NULL DEFAULT 0, -- NaN/Inf count in grad and weights
  device       TEXT NOT NULL,
  PRIMARY KEY (run_id, step, param_id)
) WITHOUT ROWID;

-- Per module call (forward), with the backward time filled in by the same row.
CREATE TABLE IF NOT EXISTS module_calls (
  run_id         INTEGER NOT NULL,
  step           INTEGER NOT NULL,
  module_id      INTEGER NOT NULL,
  seq            INTEGER NOT NULL,         -- call order inside the step
  caller_id      INTEGER,                  -- module whose forward called this one
  phase          TEXT NOT NULL,            -- phase of the step the call belongs to
  training       INTEGER NOT NULL,         -- the module's training flag at the call
  grad_enabled   INTEGER NOT NULL,
  in_device      TEXT,
  param_device   TEXT,                     -- NULL when it has no own parameters
  out_device     TEXT,
  in_shape       TEXT,
  out_shape      TEXT,
  fwd_us         REAL,
  bwd_us         REAL,                     -- NULL when no backward reached it
  grad_out_norm  REAL,                     -- norm of d(loss)/d(output)
  out_mean       REAL,                     -- sampled every runs.sample_every steps, else NULL
  out_std        REAL,
  out_zero_frac  REAL,                     -- fraction of exactly-zero outputs
  dead_frac      REAL,                     -- fraction of output units zero for every sample in the batch
  out_nonfinite  INTEGER,
  PRIMARY KEY (run_id, step, seq)
) WITHOUT ROWID;

-- Cross-device moves made by the to() op.
CREATE TABLE IF NOT EXISTS transfers (
  run_id    INTEGER NOT NULL,
  step      INTEGER NOT NULL,
  module_id INTEGER,                       -- module whose forward made the move (NULL: outside)
  src       TEXT NOT NULL,
  dst       TEXT NOT NULL,
  bytes     INTEGER NOT NULL,                -- total bytes of the `count` moves in this step
  count     INTEGER NOT NULL DEFAULT 1       -- moves with this module, src and dst in this step
);
CREATE INDEX IF NOT EXISTS transfers_step ON transfers (run_id, step);

-- What the engine saw happen. kind is one of:
--   module_created_in_forward, unregistered_call, uninitialised_module,
--   state_dict_load, nonfinite, error, note
CREATE TABLE IF NOT EXISTS events (
  id        INTEGER PRIMARY KEY,
  run_id    INTEGER NOT NULL,
  step      INTEGER,
  kind      TEXT NOT NULL,
  module_id INTEGER,
  param_id  INTEGER,
  detail    TEXT,
  value     REAL,
  wall_time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, kind);

-- GPU activity from CUPTI (kernels, memcpy, memset).
CREATE TABLE IF NOT EXISTS kernels (
  run_id    INTEGER NOT NULL,
  step      INTEGER NOT NULL,
  module_id INTEGER,                       -- innermost module (NULL: optimizer or outside)
  phase     TEXT NOT NULL,                 -- 'forward', 'backward', 'optimizer', 'other'
  kind      TEXT NOT NULL DEFAULT 'kernel' CHECK (kind IN ('kernel', 'memcpy', 'memset')),
  name_id   INTEGER REFERENCES strings (id),
  start_ns  INTEGER NOT NULL,
  end_ns    INTEGER NOT NULL,
  grid_x INTEGER, grid_y INTEGER, grid_z INTEGER,
  block_x INTEGER, block_y INTEGER, block_z INTEGER,
  stream    INTEGER,
  bytes     INTEGER
);
CREATE INDEX IF NOT EXISTS kernels_step ON kernels (run_id, step);

-- Indexes for the per-parameter and per-module histories the TUI plots.
CREATE INDEX IF NOT EXISTS param_stats_param ON param_stats (run_id, param_id, step);
CREATE INDEX IF NOT EXISTS module_calls_module ON module_calls (run_id, module_id, step);

-- ---------------------------------------------------------------- views
-- Which parameters changed, by how much, at each step.
CREATE VIEW IF NOT EXISTS param_changes AS
SELECT s.run_id, s.step, p.name, s.grad_norm, s.update_norm, s.weight_norm, s.ratio,
       s.nonfinite, s.device
FROM param_stats s JOIN params p ON p.run_id = s.run_id AND p.id = s.param_id;

-- Which modules ran on which device, in which mode, per phase.
CREATE VIEW IF NOT EXISTS module_activity AS
SELECT c.run_id, m.path, m.type, c.phase, c.training, c.grad_enabled,
       c.in_device, c.param_device, c.out_device,
       COUNT(*) AS calls, MIN(c.step) AS first_step, MAX(c.step) AS last_step,
       AVG(c.fwd_us) AS avg_fwd_us, AVG(c.bwd_us) AS avg_bwd_us
FROM module_calls c JOIN modules m ON m.run_id = c.run_id AND m.id = c.module_id
GROUP BY c.run_id, c.module_id, c.phase, c.training, c.grad_enabled,
         c.in_device, c.param_device, c.out_device;

-- Loss curve per phase.
CREATE VIEW IF NOT EXISTS loss_curve AS
SELECT run_id, step, phase, epoch, loss, lr FROM steps ORDER BY run_id, step;

-- Per parameter: how much it moved over the whole run.
CREATE VIEW IF NOT EXISTS param_summary AS
SELECT p.run_id, p.name, p.shape, p.requires_grad, p.in_optimizer,
       COUNT(s.step) AS steps, SUM(s.update_norm) AS total_update,
       MAX(s.grad_norm) AS max_grad_norm, AVG(s.ratio) AS avg_ratio
FROM params p LEFT JOIN param_stats s ON s.run_id = p.run_id AND s.param_id = p.id
WHERE p.kind = 'param'
GROUP BY p.run_id, p.id;

-- GPU time per module, phase and step.
CREATE VIEW IF NOT EXISTS gpu_time_by_module AS
SELECT k.run_id, k.step, COALESCE(m.path, '(optimizer/other)') AS module, k.phase,
       COUNT(*) AS kernels, SUM(k.end_ns - k.start_ns) / 1000.0 AS gpu_us
FROM kernels k LEFT JOIN modules m ON m.run_id = k.run_id AND m.id = k.module_id
WHERE k.kind = 'kernel'
GROUP BY k.run_id, k.step, k.module_id, k.phase;

-- Top kernels by total time.
CREATE VIEW IF NOT EXISTS top_kernels AS
SELECT k.run_id, s.s AS name, COUNT(*) AS launches,
       SUM(k.end_ns - k.start_ns) / 1000.0 AS total_us,
       AVG(k.end_ns - k.start_ns) / 1000.0 AS avg_us
FROM kernels k LEFT JOIN strings s ON s.id = k.name_id
WHERE k.kind = 'kernel'
GROUP BY k.run_id, k.name_id ORDER BY total_us DESC;

-- Host/device copy volume per step (CUPTI memcpy records and engine transfers).
CREATE VIEW IF NOT EXISTS copy_volume AS
SELECT run_id, step, 'cupti' AS source, SUM(bytes) AS bytes, COUNT(*) AS copies
FROM kernels WHERE kind = 'memcpy' GROUP BY run_id, step
UNION ALL
SELECT run_id, step, 'engine', SUM(bytes), SUM(count)
FROM transfers GROUP BY run_id, step;
