/* Bearer tokens: read from server.tokens_file at start and on reload, checked on every
 * route whose row asks for it (all but health). */
#include "server/http_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Read into a copy first: a reload whose file is missing or bad must keep the tokens in
 * force, not leave the server open. */
int srv_auth_load(srv_server *s, char *err, size_t errlen) {
    char tokens[SRV_MAX_TOKENS][sizeof s->tokens[0]];
    int n_tokens = 0;
    if (!s->cfg.tokens_file[0]) {
        s->n_tokens = 0;
        return 0;
    }
    FILE *f = fopen(s->cfg.tokens_file, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read the tokens file: %s", s->cfg.tokens_file, strerror(errno));
        return -1;
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        char *t = line;
        while (*t == ' ' || *t == '\t') t++;
        if (!*t || *t == '#') continue;
        if (strlen(t) >= sizeof tokens[0] || strlen(t) < 8) {
            fclose(f);
            snprintf(err, errlen, "%s: a token must have 8 to 127 characters", s->cfg.tokens_file);
            return -1;
        }
        if (n_tokens == SRV_MAX_TOKENS) break;
        snprintf(tokens[n_tokens++], sizeof tokens[0], "%s", t);
    }
    fclose(f);
    if (n_tokens == 0) {
        snprintf(err, errlen, "%s: no tokens in the file (authentication would refuse everything)",
                 s->cfg.tokens_file);
        return -1;
    }
    memcpy(s->tokens, tokens, sizeof tokens[0] * (size_t)n_tokens);
    s->n_tokens = n_tokens;
    return 0;
}

/* Compare in time independent of where the strings differ. */
static int token_eq(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

int srv_auth_ok(srv_server *s, struct MHD_Connection *c) {
    if (s->n_tokens == 0) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    int ok = 0;
    for (int i = 0; i < s->n_tokens; i++) ok |= token_eq(h, s->tokens[i]);
    return ok;
}
