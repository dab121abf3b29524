/* Report formats for findings: text (for people), JSON, JUnit XML and GitHub workflow
 * commands (for CI). */
#include "diag/diag.h"

#include <string.h>

int ns_report_format_parse(const char *text, ns_report_format *fmt) {
    if (strcmp(text, "text") == 0)
        *fmt = NS_FORMAT_TEXT;
    else if (strcmp(text, "json") == 0)
        *fmt = NS_FORMAT_JSON;
    else if (strcmp(text, "junit") == 0)
        *fmt = NS_FORMAT_JUNIT;
    else if (strcmp(text, "github") == 0)
        *fmt = NS_FORMAT_GITHUB;
    else
        return -1;
    return 0;
}

static int fails(const ns_report_info *in, const ns_finding *f) {
    return in->has_fail_on && f->severity >= in->fail_on;
}

static const char *module_name(const ns_finding *f) {
    if (!f->module) return NULL;
    return f->module[0] ? f->module : "(model)";
}

/* The ids of the rules that ran, in table order. */
static int rule_ran(const ns_report_info *in, const char *id) {
    if (!in->rules_run) return 1;
    size_t len = strlen(id);
    for (const char *p = in->rules_run; (p = strstr(p, id)) != NULL; p += len) {
        int starts = p == in->rules_run || p[-1] == ',' || p[-1] == ' ';
        int ends = p[len] == '\0' || p[len] == ',' || p[len] == ' ';
        if (starts && ends) return 1;
    }
    return 0;
}

static size_t rules_ran_count(const ns_report_info *in) {
    size_t n, c = 0;
    const ns_rule *r = ns_rules(&n);
    for (size_t i = 0; i < n; i++) c += (size_t)rule_ran(in, r[i].id);
    return c;
}

static void counts(const ns_finding *f, size_t n, size_t c[3]) {
    c[0] = c[1] = c[2] = 0;
    for (size_t i = 0; i < n; i++) c[f[i].severity]++;
}

static void steps_text(char *buf, size_t len, const ns_finding *f) {
    if (f->first_step < 0)
        snprintf(buf, len, "-");
    else if (f->last_step < 0 || f->last_step == f->first_step)
        snprintf(buf, len, "step %lld", (long long)f->first_step);
    else
        snprintf(buf, len, "steps %lld..%lld", (long long)f->first_step, (long long)f->last_step);
}

/* ------------------------------------------------------------------ text */

static const char *sev_color(ns_severity s) {
    switch (s) {
    case NS_SEV_ERROR:
        return "\033[1;31m";
    case NS_SEV_WARNING:
        return "\033[1;33m";
    case NS_SEV_INFO:
        return "\033[36m";
    }
    return "";
}

static void plural(FILE *out, size_t n, const char *word) {
    int invariant = strcmp(word, "info") == 0;
    fprintf(out, "%zu %s%s", n, word, n == 1 || invariant ? "" : "s");
}

static void write_text(FILE *out, const ns_report_info *in, const ns_finding *f, size_t n) {
    fprintf(out, "nnscope check: %s, run %lld", in->db_path ? in->db_path : "?",
            (long long)in->run_id);
    if (in->run_status) fprintf(out, " (%s", in->run_status);
    if (in->run_status && in->run_detail && in->run_detail[0]) fprintf(out, ": %s", in->run_detail);
    if (in->run_status) fprintf(out, ")");
    if (in->train_steps >= 0)
        fprintf(out, ", %lld train + %lld eval steps", (long long)in->train_steps,
                (long long)(in->eval_steps < 0 ? 0 : in->eval_steps));
    fprintf(out, "\n");
    if (in->command && in->command[0]) fprintf(out, "command: %s\n", in->command);
    if (in->record_error && in->record_error[0])
        fprintf(out, "recording stopped early: %s (later steps are missing)\n", in->record_error);

    static const char *const heads[3] = {"info", "warning", "error"};
    for (int s = NS_SEV_ERROR; s >= NS_SEV_INFO; s--) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += f[i].severity == (ns_severity)s;
        if (k == 0) continue;
        fprintf(out, "\n%s", in->color ? sev_color((ns_severity)s) : "");
        plural(out, k, heads[s]);
        fprintf(out, "%s\n", in->color ? "\033[0m" : "");
        for (size_t i = 0; i < n; i++) {
            if (f[i].severity != (ns_severity)s) continue;
            char st[64];
            steps_text(st, sizeof st, &f[i]);
            fprintf(out, "\n  %s%s%s [%s] %s\n", in->color ? sev_color(f[i].severity) : "",
                    ns_severity_name(f[i].severity), in->color ? "\033[0m" : "", f[i].rule,
                    f[i].message);
            if (module_name(&f[i]))
                fprintf(out, "    module:   %s%s%s\n", module_name(&f[i]),
                        f[i].param ? "  param: " : "", f[i].param ? f[i].param : "");
            else if (f[i].param)
                fprintf(out, "    param:    %s\n", f[i].param);
            fprintf(out, "    steps:    %s\n", st);
            if (f[i].evidence && f[i].evidence[0])
                fprintf(out, "    evidence: %s\n", f[i].evidence);
            fprintf(out, "    fix:      %s\n", f[i].fix);
        }
    }
    size_t c[3];
    counts(f, n, c);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += (size_t)fails(in, &f[i]);
    fprintf(out, "\n");
    if (n == 0) fprintf(out, "no findings: ");
    plural(out, c[NS_SEV_ERROR], "error");
    fprintf(out, ", ");
    plural(out, c[NS_SEV_WARNING], "warning");
    fprintf(out, ", %zu info from %zu rules", c[NS_SEV_INFO], rules_ran_count(in));
    if (!in->has_fail_on)
        fprintf(out, " (--fail-on never)\n");
    else if (bad)
        fprintf(out, ": FAILED (%zu at or above %s)\n", bad, ns_severity_name(in->fail_on));
    else
        fprintf(out, ": passed (--fail-on %s)\n", ns_severity_name(in->fail_on));
}

/* ------------------------------------------------------------------ JSON */

static void json_str(FILE *out, const char *s) {
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void json_int(FILE *out, int64_t v) {
    if (v < 0)
        fputs("null", out);
    else
        fprintf(out, "%lld", (long long)v);
}

static void write_json(FILE *out, const ns_report_info *in, const ns_finding *f, size_t n) {
    size_t c[3], nr;
    counts(f, n, c);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += (size_t)fails(in, &f[i]);
    fputs("{\n  \"file\": ", out);
    json_str(out, in->db_path);
    fprintf(out, ",\n  \"run\": %lld,\n  \"status\": ", (long long)in->run_id);
    json_str(out, in->run_status);
    fputs(",\n  \"command\": ", out);
    json_str(out, in->command);
    fputs(",\n  \"record_error\": ", out);
    json_str(out, in->record_error);
    fputs(",\n  \"train_steps\": ", out);
    json_int(out, in->train_steps);
    fputs(",\n  \"eval_steps\": ", out);
    json_int(out, in->eval_steps);
    fputs(",\n  \"rules\": [", out);
    const ns_rule *r = ns_rules(&nr);
    int first = 1;
    for (size_t i = 0; i < nr; i++) {
        if (!rule_ran(in, r[i].id)) continue;
        fputs(first ? "" : ", ", out);
        json_str(out, r[i].id);
        first = 0;
    }
    fputs("],\n  \"fail_on\": ", out);
    json_str(out, in->has_fail_on ? ns_severity_name(in->fail_on) : "never");
    fprintf(out, ",\n  \"failed\": %s,\n", bad ? "true" : "false");
    fprintf(out, "  \"counts\": {\"error\": %zu, \"warning\": %zu, \"info\": %zu},\n",
            c[NS_SEV_ERROR], c[NS_SEV_WARNING], c[NS_SEV_INFO]);
    fputs("  \"findings\": [", out);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",\n    {" : "\n    {", out);
        fputs("\"rule\": ", out);
        json_str(out, f[i].rule);
        fputs(", \"severity\": ", out);
        json_str(out, ns_severity_name(f[i].severity));
        fputs(", \"module\": ", out);
        json_str(out, f[i].module);
        fputs(", \"module_id\": ", out);
        json_int(out, f[i].module_id);
        fputs(", \"param\": ", out);
        json_str(out, f[i].param);
        fputs(", \"first_step\": ", out);
        json_int(out, f[i].first_step);
        fputs(", \"last_step\": ", out);
        json_int(out, f[i].last_step);
        fputs(", \"message\": ", out);
        json_str(out, f[i].message);
        fputs(", \"evidence\": ", out);
        json_str(out, f[i].evidence);
        fputs(", \"fix\": ", out);
        json_str(out, f[i].fix);
        fputs("}", out);
    }
    fputs(n ? "\n  ]\n}\n" : "]\n}\n", out);
}

/* ------------------------------------------------------------------ JUnit */

/* XML 1.0 text: escapes markup characters and drops control characters it cannot hold. */
static void xml_str(FILE *out, const char *s) {
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&apos;", out);
            break;
        case '\n':
            fputs("&#10;", out);
            break;
        case '\t':
            fputc('\t', out);
            break;
        default:
            if (*p >= 0x20) fputc(*p, out);
        }
    }
}

static void xml_finding(FILE *out, const ns_finding *f) {
    char st[64];
    steps_text(st, sizeof st, f);
    fputs("[", out);
    xml_str(out, ns_severity_name(f->severity));
    fputs("] ", out);
    xml_str(out, f->message);
    fputs("&#10;module: ", out);
    xml_str(out, module_name(f) ? module_name(f) : "-");
    if (f->param) {
        fputs("  param: ", out);
        xml_str(out, f->param);
    }
    fputs("&#10;steps: ", out);
    xml_str(out, st);
    fputs("&#10;evidence: ", out);
    xml_str(out, f->evidence);
    fputs("&#10;fix: ", out);
    xml_str(out, f->fix);
    fputs("&#10;", out);
}

static void write_junit(FILE *out, const ns_report_info *in, const ns_finding *f, size_t n) {
    size_t nr, ran = rules_ran_count(in), failed_cases = 0;
    const ns_rule *r = ns_rules(&nr);
    for (size_t i = 0; i < nr; i++) {
        if (!rule_ran(in, r[i].id)) continue;
        for (size_t j = 0; j < n; j++)
            if (strcmp(f[j].rule, r[i].id) == 0 && fails(in, &f[j])) {
                failed_cases++;
                break;
            }
    }
    char suite[512];
    snprintf(suite, sizeof suite, "nnscope check %s run %lld", in->db_path ? in->db_path : "?",
             (long long)in->run_id);
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nnscope check\" "
          "tests=\"",
          out);
    fprintf(out, "%zu\" failures=\"%zu\" errors=\"0\">\n  <testsuite name=\"", ran, failed_cases);
    xml_str(out, suite);
    fprintf(out, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"0\">\n", ran,
            failed_cases);
    for (size_t i = 0; i < nr; i++) {
        if (!rule_ran(in, r[i].id)) continue;
        size_t nf = 0, nbelow = 0;
        const ns_finding *firstf = NULL;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(f[j].rule, r[i].id) != 0) continue;
            if (fails(in, &f[j])) {
                if (!firstf) firstf = &f[j];
                nf++;
            } else {
                nbelow++;
            }
        }
        fputs("    <testcase classname=\"nnscope.check\" name=\"", out);
        xml_str(out, r[i].id);
        fputs("\"", out);
        if (!nf && !nbelow) {
            fputs("/>\n", out);
            continue;
        }
        fputs(">\n", out);
        if (nf) {
            fputs("      <failure type=\"", out);
            xml_str(out, ns_severity_name(firstf->severity));
            fputs("\" message=\"", out);
            xml_str(out, firstf->message);
            if (nf > 1) fprintf(out, " (and %zu more)", nf - 1);
            fputs("\">", out);
            for (size_t j = 0; j < n; j++)
                if (strcmp(f[j].rule, r[i].id) == 0 && fails(in, &f[j])) xml_finding(out, &f[j]);
            fputs("</failure>\n", out);
        }
        if (nbelow) {
            fputs("      <system-out>", out);
            for (size_t j = 0; j < n; j++)
                if (strcmp(f[j].rule, r[i].id) == 0 && !fails(in, &f[j])) xml_finding(out, &f[j]);
            fputs("</system-out>\n", out);
        }
        fputs("    </testcase>\n", out);
    }
    fputs("  </testsuite>\n</testsuites>\n", out);
}

/* ------------------------------------------------------------------ GitHub */

/* Workflow command data: %, CR and LF are escaped; properties also escape ':' and ','. */
static void gh_str(FILE *out, const char *s, int property) {
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '%')
            fputs("%25", out);
        else if (*p == '\r')
            fputs("%0D", out);
        else if (*p == '\n')
            fputs("%0A", out);
        else if (property && *p == ':')
            fputs("%3A", out);
        else if (property && *p == ',')
            fputs("%2C", out);
        else
            fputc(*p, out);
    }
}

static void write_github(FILE *out, const ns_report_info *in, const ns_finding *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        static const char *const cmd[3] = {"notice", "warning", "error"};
        char title[256], st[64];
        steps_text(st, sizeof st, &f[i]);
        if (module_name(&f[i]))
            snprintf(title, sizeof title, "nnscope %s: %s", f[i].rule, module_name(&f[i]));
        else
            snprintf(title, sizeof title, "nnscope %s", f[i].rule);
        fprintf(out, "::%s title=", cmd[f[i].severity]);
        gh_str(out, title, 1);
        fputs("::", out);
        gh_str(out, f[i].message, 0);
        fputs("%0A", out);
        gh_str(out, st, 0);
        if (f[i].evidence && f[i].evidence[0]) {
            fputs("; ", out);
            gh_str(out, f[i].evidence, 0);
        }
        fputs("%0Afix: ", out);
        gh_str(out, f[i].fix, 0);
        fputc('\n', out);
    }
    size_t c[3], bad = 0;
    counts(f, n, c);
    for (size_t i = 0; i < n; i++) bad += (size_t)fails(in, &f[i]);
    fprintf(out, "nnscope check %s run %lld: %zu errors, %zu warnings, %zu info: %s\n",
            in->db_path ? in->db_path : "?", (long long)in->run_id, c[NS_SEV_ERROR],
            c[NS_SEV_WARNING], c[NS_SEV_INFO], bad ? "FAILED" : "passed");
}

int ns_report_write(FILE *out, ns_report_format fmt, const ns_report_info *info,
                    const ns_finding *f, size_t n) {
    switch (fmt) {
    case NS_FORMAT_TEXT:
        write_text(out, info, f, n);
        break;
    case NS_FORMAT_JSON:
        write_json(out, info, f, n);
        break;
    case NS_FORMAT_JUNIT:
        write_junit(out, info, f, n);
        break;
    case NS_FORMAT_GITHUB:
        write_github(out, info, f, n);
        break;
    }
    return ferror(out) ? -1 : 0;
}
