/*
 * fuzz_userlist.c — the auth_file parser (userlist_parse) on untrusted text.
 *
 * After a successful parse every "quoted" word of the input is looked up
 * (so the sorted, de-duplicated table is searched for names that are in it
 * and names that are not), and each secret found goes through the parser
 * auth.c applies to it (scram_parse_secret).
 */
#include "fuzz_common.h"
#include "scram.h"
#include "userlist.h"

static void lookup(const Userlist *ul, const char *name)
{
    const char *secret = userlist_get(ul, name);
    if (!secret) return;
    fuzz_touch_str(secret);
    ScramSecret s;
    if (scram_parse_secret(secret, &s) == 0 && (s.salt_len < 0 || s.salt_len > SCRAM_SALT_MAX))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    char *text = (char *)fuzz_dup(data, size); /* exact size, not NUL-terminated */
    Userlist *ul = userlist_parse("fuzz.txt", text, size, err, sizeof(err));
    if (!ul) {
        fuzz_touch_str(err);
        free(text);
        return 0;
    }
    if (userlist_count(ul) < 0) abort();
    lookup(ul, "");
    lookup(ul, "postgres");
    char *s = fuzz_strdup(data, size);
    for (char *q = strchr(s, '"'); q;) {
        char *e = strchr(q + 1, '"');
        if (!e) break;
        *e = '\0';
        lookup(ul, q + 1);
        q = strchr(e + 1, '"');
    }
    free(s);
    userlist_free(ul);
    free(text);
    return 0;
}
