/* The TUI's view model: plain C structs holding what the screens show, filled incrementally
 * by fetch.c (SQL) and read by draw*.c. Nothing here runs SQL or touches the terminal, so
 * the unit tests build models by hand.
 *
 * Memory is bounded whatever the run's length: metric histories are rings (ring.h), the event
 * log keeps the last NS_TUI_EVENTS_N entries, and modules/params beyond NS_TUI_MAX_MODULES /
 * NS_TUI_MAX_PARAMS are counted but not kept (a model that builds a layer every step grows
 * the modules table without end). */
#ifndef NS_TUI_MODEL_H
#define NS_TUI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "diag/diag.h"
#include "ring.h"

#define NS_TUI_SPARK_N 16       /* points per module/parameter sparkline (the widest drawn) */
#define NS_TUI_HIST_N 4096      /* points per full-run history (loss, detail plots) */
#define NS_TUI_RATE_N 32        /* step end times kept for steps/s */
#define NS_TUI_COLD_N 1024      /* most points a history's first read fetches (then sampled) */
#define NS_TUI_EVENTS_N 64      /* newest events kept */
#define NS_TUI_MAX_MODULES 8192 /* modules kept per run */
#define NS_TUI_MAX_PARAMS 32768 /* parameters and buffers kept per run */
#define NS_TUI_FLAGS_LEN 128    /* bytes of a module's flag text */

/* Event kinds seen for a module (bit mask). */
enum {
    NS_EV_CREATED = 1 << 0,    /* module_created_in_forward */
    NS_EV_UNREG_CALL = 1 << 1, /* unregistered_call */
    NS_EV_NONFINITE = 1 << 2,  /* nonfinite */
    NS_EV_UNINIT = 1 << 3,     /* uninitialised_module */
    NS_EV_LOAD = 1 << 4,       /* state_dict_load */
    NS_EV_ERROR = 1 << 5,      /* error */
    NS_EV_NOTE = 1 << 6        /* note */
};

/* Bit of an event kind name, 0 when unknown. */
unsigned ns_tui_event_bit(const char *kind);

typedef struct {
    int64_t id, parent_id, creator_id, first_step; /* parent_id/creator_id: -1 for NULL */
    char *path, *type, *describe;                  /* owned; describe may be NULL */
    const char *name; /* shown name: last path component ("(model)" for the root) */
    int registered, created_in_forward;
    int64_t n_params;    /* numel of its own parameters */
    int64_t tree_params; /* numel of its subtree's parameters (ns_tui_model_link) */
    char device[24];     /* from the latest call (param, else output device), else params */
    int mode;            /* training flag at the latest train-step call; -1 unknown */
    int mode_any;        /* training flag at the latest call of any phase; -1 unknown */
    /* tree links (indices into model.mods; -1 none), set by ns_tui_model_link */
    int parent, first_child, next_sibling, depth, nchildren;
    int first_param, nparams; /* own params: indices into model.mod_params */
    int collapsed;
    /* subtree aggregates per train step (parameters only, buffers excluded) */
    ns_ring grad;      /* sqrt(sum grad_norm^2); NaN when no parameter had a gradient */
    ns_ring ratio;     /* sqrt(sum update^2) / sqrt(sum weight^2) */
    ns_ring zero;      /* out_zero_frac of its calls (sampled steps) */
    int64_t nonfinite; /* NaN/Inf count of its own params at the latest step */
    unsigned events;   /* NS_EV_* seen for it */
    /* from findings (ns_tui_model_set_findings) */
    int nfindings;
    int max_sev;                  /* ns_severity of its worst finding, -1 none */
    char flags[NS_TUI_FLAGS_LEN]; /* rule ids, comma-separated */
    /* accumulation of the step being read (fetch internals) */
    double acc_g2, acc_u2, acc_w2;
    int64_t acc_gn, acc_nf, acc_step;
} ns_tui_mod;

typedef struct {
    int64_t id, module_id;
    int module;         /* index into model.mods, -1 unknown */
    char *name, *shape; /* owned */
    int is_buffer, requires_grad, in_optimizer;
    int64_t numel;
    double lr;                                              /* NaN when NULL */
    ns_ring grad, ratio;                                    /* window rings of its own values */
    double last_grad, last_update, last_weight, last_ratio; /* NaN when NULL / none */
    int64_t last_nonfinite, last_step;                      /* last_step -1: no stats yet */
    double total_update; /* sum of update_norm over the steps read */
    char device[16];
    int max_sev;                  /* worst finding naming it, -1 none */
    char flags[NS_TUI_FLAGS_LEN]; /* rule ids of findings naming it */
} ns_tui_param;

typedef struct {
    int64_t id;
    double started_at, ended_at, heartbeat_at; /* NaN when NULL */
    char *status, *status_detail, *command, *host, *engine_version, *devices, *cupti_status;
    int64_t pid, dropped, sample_every, last_step; /* -1 when NULL */
} ns_tui_run;

typedef struct {
    int64_t id, step, module_id, param_id; /* -1 for NULL */
    char kind[28];
    char detail[100]; /* truncated */
    double value, wall_time;
} ns_tui_event;

typedef struct {
    int64_t name_id;
    char *name; /* owned, NULL until looked up */
    int64_t launches, total_ns, max_ns;
} ns_tui_kernel;

/* Kernel phases, in the kernels table's spelling. */
enum { NS_KPH_FORWARD, NS_KPH_BACKWARD, NS_KPH_OPTIMIZER, NS_KPH_OTHER, NS_KPH_COUNT };

typedef struct {
    int64_t module_id; /* -1: optimizer or outside any module */
    int64_t ns[NS_KPH_COUNT];
    int64_t launches;
} ns_tui_kmod;

/* Open-addressing map from an id to an array index (internal to model.c). */
typedef struct {
    int64_t *keys;
    int *vals; /* index + 1; 0 marks an empty slot */
    int cap, n;
} ns_tui_idmap;

/* A findings group: one rule, its findings contiguous in model.find. */
typedef struct {
    const char *rule;
    ns_severity sev; /* worst of its findings */
    size_t first, count;
} ns_tui_fgroup;

/* One visible row of the module tree. */
typedef struct {
    int mod;       /* index into model.mods */
    int depth;     /* 0 for roots */
    int last;      /* last of its visible siblings */
    uint64_t more; /* bit d (d < depth): the ancestor at depth d+1 has later siblings */
} ns_tui_row;

typedef enum {
    NS_SORT_TREE = 0, /* recording order (module id) */
    NS_SORT_NAME,     /* name A-Z */
    NS_SORT_GRAD,     /* latest gradient norm, largest first */
    NS_SORT_RATIO,    /* latest update/weight ratio, largest first */
    NS_SORT_PARAMS,   /* parameter count (subtree), largest first */
    NS_SORT_FLAGS,    /* worst finding first, then flagged markers */
    NS_SORT_COUNT_
} ns_tui_sort;

/* Detail plots for one module or parameter: whole-run histories, downsampled. */
typedef enum { NS_DETAIL_NONE = 0, NS_DETAIL_MODULE = 1, NS_DETAIL_PARAM = 2 } ns_tui_detail_kind;

typedef struct {
    int kind;       /* ns_tui_detail_kind */
    int64_t id;     /* module or parameter id */
    int64_t cursor; /* last step read into the rings */
    int nsources;   /* parameters aggregated (module: own parameters) */
    ns_ring grad, ratio, wnorm, zero;
} ns_tui_detail;

typedef struct {
    /* run */
    ns_tui_run *runs; /* every run in the file, by id */
    int nruns;
    int64_t run_id; /* run shown; -1 none yet */
    /* modules and params */
    ns_tui_mod *mods;
    int nmods, capmods;
    int64_t mods_dropped; /* rows not kept (over NS_TUI_MAX_MODULES) */
    ns_tui_param *params;
    int nparams, capparams;
    int64_t params_dropped;
    int *mod_params;                 /* params grouped by module (ns_tui_model_link) */
    ns_tui_idmap mod_map, param_map; /* id -> index */
    int linked;                      /* links are current */
    int *touched;                    /* modules accumulated in the step being read */
    int ntouched, captouched;
    /* steps */
    int64_t first_step, last_step;  /* closed steps seen; -1 none */
    int64_t n_train, n_eval, epoch; /* steps read (a long run's first read samples) */
    double last_loss, last_eval_loss, last_lr, last_wall, first_wall; /* NaN when none */
    ns_ring loss;           /* train loss, whole run (downsampled) */
    ns_ring eval_loss;      /* eval loss, whole run (downsampled) */
    ns_ring walls;          /* wall_time of the last steps (window) */
    int64_t stats_step;     /* step being accumulated from param_stats, -1 none */
    int64_t sampled_stride; /* > 0 while fetch.c feeds a sampled first read of steps */
    /* events */
    ns_tui_event events[NS_TUI_EVENTS_N];
    int nevents, events_head; /* ring */
    int64_t events_total;
    /* kernels */
    ns_tui_kernel *kernels;
    int nkernels, capkernels;
    ns_tui_kmod *kmods;
    int nkmods, capkmods;
    ns_tui_idmap kernel_map, kmod_map;
    int64_t kernel_rows, kernel_ns, memcpy_bytes, memcpy_count;
    /* findings (owned; replaced as a whole) */
    ns_finding *find;
    size_t nfind;
    ns_tui_fgroup *groups;
    size_t ngroups;
    size_t sev_count[3]; /* by ns_severity */
    int rules_state;     /* 0 not run, 1 ran, -1 failed */
    char rules_err[256];
    double rules_ms; /* duration of the last rules run */
    double rules_at; /* wall clock of the last result */
    /* tree rows (ns_tui_model_build_rows) */
    ns_tui_row *rows;
    int nrows, caprows;
    /* detail */
    ns_tui_detail det;
    uint64_t generation; /* bumped by every change */
    int oom;             /* an allocation failed; the model is partial */
} ns_tui_model;

/* Initialises an empty model (allocates nothing). */
void ns_tui_model_init(ns_tui_model *m);

/* Frees everything the model owns; it is empty (and reusable) afterwards. */
void ns_tui_model_free(ns_tui_model *m);

/* Drops the data of the shown run (modules, params, steps, events, kernels, findings, detail)
 * keeping the runs list; used when another run is picked. */
void ns_tui_model_reset_run(ns_tui_model *m);

/* Replaces the runs list; takes ownership of runs (n entries, malloc'd, strings malloc'd). */
void ns_tui_model_set_runs(ns_tui_model *m, ns_tui_run *runs, int n);

/* The shown run's row, or NULL. */
const ns_tui_run *ns_tui_model_run(const ns_tui_model *m);

/* Frees the strings of one run row. */
void ns_tui_run_clear(ns_tui_run *r);

/* Adds a module row (strings are copied; describe may be NULL; parent_id/creator_id -1 for
 * NULL). Returns its index, -1 when it is already present, or -2 when not kept (cap reached
 * or out of memory; counted in mods_dropped). Invalidates links. */
int ns_tui_model_add_module(ns_tui_model *m, int64_t id, int64_t parent_id, const char *path,
                            const char *type, const char *describe, int registered,
                            int created_in_forward, int64_t creator_id, int64_t n_params,
                            int64_t first_step);

/* Adds a parameter/buffer row (strings copied). Returns its index, -1 when present, -2 when
 * not kept. Invalidates links. */
int ns_tui_model_add_param(ns_tui_model *m, int64_t id, int64_t module_id, const char *name,
                           int is_buffer, const char *shape, int64_t numel, int requires_grad,
                           int in_optimizer, double lr);

/* Index of the module / parameter with this id, or -1. */
int ns_tui_model_find_module(const ns_tui_model *m, int64_t id);
int ns_tui_model_find_param(const ns_tui_model *m, int64_t id);

/* Recomputes tree links, depths, subtree parameter counts, shown names and the params of each
 * module. Modules whose parent is unknown become roots. Cheap; call after adding rows. */
void ns_tui_model_link(ns_tui_model *m);

/* Records a closed step (while sampled_stride > 0, as a point standing for that many steps). */
void ns_tui_model_add_step(ns_tui_model *m, int64_t step, int is_train, int64_t epoch, double loss,
                           double lr, double wall_time);

/* One param_stats row (NaN for NULL). Rows must come in step order; a row of a newer step
 * first closes the previous one (module aggregates are pushed). */
void ns_tui_model_add_stat(ns_tui_model *m, int64_t step, int64_t param_id, double grad,
                           double update, double weight, double ratio, int64_t nonfinite,
                           const char *device);

/* Closes the step being accumulated (call after the last row of a batch). */
void ns_tui_model_flush_stats(ns_tui_model *m);

/* One module_calls row (zero_frac NaN when not sampled; device may be NULL). */
void ns_tui_model_add_call(ns_tui_model *m, int64_t step, int64_t module_id, int train_phase,
                           int training, const char *device, double zero_frac);

/* One events row (NULL detail allowed; module_id/param_id/step -1 for NULL). */
void ns_tui_model_add_event(ns_tui_model *m, int64_t id, int64_t step, const char *kind,
                            int64_t module_id, int64_t param_id, const char *detail, double value,
                            double wall_time);

/* Newest-first access to the kept events: i = 0 is the newest; NULL past the end. */
const ns_tui_event *ns_tui_model_event(const ns_tui_model *m, int i);

/* One kernels row: phase text as in the table, kind 0 kernel / 1 memcpy / 2 memset. */
void ns_tui_model_add_kernel(ns_tui_model *m, int64_t module_id, const char *phase, int kind,
                             int64_t name_id, int64_t dur_ns, int64_t bytes);

/* Sets the name of an interned kernel name id (copied). */
void ns_tui_model_set_kernel_name(ns_tui_model *m, int64_t name_id, const char *name);

/* Sorts kernels by total time (largest first) and kmods likewise; for drawing. */
void ns_tui_model_sort_kernels(ns_tui_model *m);

/* Replaces the findings (takes ownership of f, n entries; frees the old ones): groups them
 * by rule, counts severities, and sets module/param flags. */
void ns_tui_model_set_findings(ns_tui_model *m, ns_finding *f, size_t n);

/* Sorts findings (rule id, severity desc, first_step, module) and fills groups (capacity n)
 * ordered by worst severity then rule id. Findings of one rule stay contiguous. Returns the
 * number of groups. */
size_t ns_tui_group_findings(ns_finding *f, size_t n, ns_tui_fgroup *groups);

/* Builds the visible tree rows into m->rows: depth-first, siblings ordered by sort (desc for
 * numbers; tree order keeps ids ascending), children of collapsed modules hidden. filter
 * (NULL/"" for none) keeps modules whose path, type or flags contain it (ASCII
 * case-insensitive) and their ancestors. Returns the row count (-1 when out of memory). */
int ns_tui_model_build_rows(ns_tui_model *m, ns_tui_sort sort, const char *filter);

/* Display name of a sort key. */
const char *ns_tui_sort_name(ns_tui_sort s);

/* Sets the detail target (kind, id); a different target resets the detail rings. */
void ns_tui_model_detail_target(ns_tui_model *m, ns_tui_detail_kind kind, int64_t id);

/* Steps per second over the last NS_TUI_RATE_N steps; NaN when unknown. */
double ns_tui_model_steps_per_sec(const ns_tui_model *m);

/* Run status as shown: "running", "finished", ... or "stale" (running, but no heartbeat or
 * step for stale_after seconds at wall clock now); "-" without a run. */
const char *ns_tui_model_status(const ns_tui_model *m, double now, double stale_after);

/* Bytes the model holds (arrays, strings, rings), for the bounded-memory test. */
size_t ns_tui_model_mem(const ns_tui_model *m);

#endif
