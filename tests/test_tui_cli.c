/* The TUI as a stand-alone program for the end-to-end test and for trying it by hand:
 * `tui_cli RUN.db [options]` behaves like `nnscope tui RUN.db [options]`. */
#include "tui.h"

int main(int argc, char **argv) {
    argv[0] = "tui";
    return ns_tui_main(argc, argv);
}
