/*
 * fuzz_hba.c — the auth_hba_file parser (hba_parse) on untrusted text, and
 * hba_match over the resulting rules for unix-socket, IPv4 and IPv6 peers,
 * with and without TLS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "fuzz_common.h"
#include "hba.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    char *text = (char *)fuzz_dup(data, size); /* exact size, not NUL-terminated */
    Hba *h = hba_parse("fuzz_hba.conf", text, size, err, sizeof(err));
    if (!h) {
        fuzz_touch_str(err);
        free(text);
        return 0;
    }
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(5000)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(5000)};
    inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
    inet_pton(AF_INET6, "fe80::1:2", &v6.sin6_addr);
    const struct sockaddr *addrs[3] = {NULL, (struct sockaddr *)&v4, (struct sockaddr *)&v6};
    static const char *const names[][2] = {
        {"postgres", "postgres"}, {"app", "alice"}, {"replication", "bob"}, {"all", "all"}};
    for (int a = 0; a < 3; a++)
        for (int tls = 0; tls < 2; tls++)
            for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
                HbaMethod m = hba_match(h, addrs[a], tls, names[n][0], names[n][1]);
                if (!hba_method_name(m)) abort();
            }
    hba_free(h);
    free(text);
    return 0;
}
