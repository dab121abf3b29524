/* nnscope rules: list the rules, explain one, print its SQL, or list the thresholds. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char rules_usage[] =
    "usage: nnscope rules [ID] [--sql ID] [--options]\n"
    "\n"
    "  (no argument)  every rule: id, default severity, title\n"
    "  ID             one rule: explanation, fix, the options it uses\n"
    "  --sql ID       the rule's SQL; it takes :run and the option names as parameters\n"
    "                 (sqlite3 shell: .parameter set :run 1)\n"
    "  --options      every threshold with its default (change with check --set NAME=VALUE)\n";

/* Prints text wrapped at 78 columns with the given indent. */
static void wrap(const char *text, int indent) {
    int col = indent;
    printf("%*s", indent, "");
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " ");
        if (n == 0) break;
        if (col > indent && col + 1 + (int)n > 78) {
            printf("\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            putchar(' ');
            col++;
        }
        printf("%.*s", (int)n, p);
        col += (int)n;
        p += n;
    }
    putchar('\n');
}

static void print_option_value(double v) {
    printf("%g", v);
}

static int explain(const ns_rule *r) {
    size_t no;
    const ns_diag_option *opt = ns_diag_options(&no);
    printf("%s (%s): %s\n\n", r->id, ns_severity_name(r->severity), r->title);
    wrap(r->explain, 2);
    printf("\nfix:\n");
    wrap(r->fix, 2);
    int any = 0;
    for (size_t i = 0; i < no; i++) {
        if (!ns_rule_uses_option(r, opt[i].name)) continue;
        if (!any) printf("\noptions (check --set NAME=VALUE):\n");
        any = 1;
        printf("  %-18s ", opt[i].name);
        print_option_value(opt[i].def);
        printf("\n");
        wrap(opt[i].doc, 6);
    }
    printf("\nSQL: nnscope rules --sql %s\n", r->id);
    return CLI_OK;
}

int cli_rules(int argc, char **argv) {
    const char *cmd = "rules", *sql_id = NULL, *one = NULL;
    int show_options = 0;
    for (int i = 1; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(rules_usage, stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--options") == 0) {
            show_options = 1;
        } else if ((m = cli_opt(cmd, argc, argv, &i, "--sql", &sql_id)) != 0) {
            if (m < 0) return CLI_USAGE;
        } else if (argv[i][0] == '-') {
            cli_error(cmd, "unknown option '%s' (see nnscope rules --help)", argv[i]);
            return CLI_USAGE;
        } else if (!one) {
            one = argv[i];
        } else {
            cli_error(cmd, "unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    if (sql_id) {
        const ns_rule *r = ns_rule_find(sql_id);
        if (!r) {
            cli_error(cmd, "unknown rule '%s' (nnscope rules lists them)", sql_id);
            return CLI_USAGE;
        }
        fputs(r->sql, stdout);
        return CLI_OK;
    }
    if (show_options) {
        size_t n;
        const ns_diag_option *opt = ns_diag_options(&n);
        printf("%-18s %-8s %s\n", "option", "default", "meaning");
        for (size_t i = 0; i < n; i++) {
            char def[32];
            snprintf(def, sizeof def, "%g", opt[i].def);
            printf("%-18s %-8s ", opt[i].name, def);
            /* Continuation lines line up under the meaning column. */
            size_t len = strlen(opt[i].doc);
            const char *p = opt[i].doc;
            int first = 1;
            while (len > 0) {
                size_t take = len;
                if (take > 52) {
                    take = 52;
                    while (take > 0 && p[take] != ' ') take--;
                    if (take == 0) take = 52;
                }
                printf("%s%.*s\n", first ? "" : "                            ", (int)take, p);
                first = 0;
                p += take;
                len -= take;
                while (*p == ' ') p++, len--;
            }
        }
        return CLI_OK;
    }
    if (one) {
        const ns_rule *r = ns_rule_find(one);
        if (!r) {
            cli_error(cmd, "unknown rule '%s' (nnscope rules lists them)", one);
            return CLI_USAGE;
        }
        return explain(r);
    }
    size_t n;
    const ns_rule *r = ns_rules(&n);
    printf("%-27s %-8s %s\n", "rule", "severity", "title");
    for (size_t i = 0; i < n; i++)
        printf("%-27s %-8s %s\n", r[i].id, ns_severity_name(r[i].severity), r[i].title);
    printf("\nnnscope rules ID explains one; --sql ID prints its SQL; --options the thresholds.\n");
    return CLI_OK;
}
