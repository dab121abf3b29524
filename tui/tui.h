/* nnscope tui: a live curses view of a recording (reads SQLite only, never the engine).
 *
 * The pieces, nvtop-style: fetch.c fills a view model (model.h) with incremental queries;
 * draw*.c render the model into a character grid (grid.h); term.c copies the grid to the
 * terminal and reads keys; `--dump` prints the same grid as text. rules.c runs the
 * diagnostics (src/diag) on a worker thread. */
#ifndef NS_TUI_H
#define NS_TUI_H

/* Runs `nnscope tui`. argv[0] is "tui", then
 *   RUN.db [--run ID] [--dump [--screen N] [--width W --height H]] [--ascii] [--interval MS]
 * Interactive (stdin and stdout must be a terminal): follows the recording live until q,
 * Ctrl-C or SIGTERM, waiting for a file that does not exist yet; the terminal is restored on
 * every exit path, crashes included. --dump renders one frame as plain UTF-8 text (ASCII with
 * --ascii) to stdout without touching the terminal; --screen 1-4 picks Modules, Findings,
 * Detail or GPU (0: the runs picker), default size 100x30.
 * Returns the process exit status: 0 on success, 1 on an error (message on stderr naming the
 * file), 2 on a usage error. */
int ns_tui_main(int argc, char **argv);

#endif
