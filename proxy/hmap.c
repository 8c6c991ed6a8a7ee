/*
 * hmap.c — string-keyed hash table (see hmap.h).
 *
 * Separate chaining; the table doubles when it holds as many entries as
 * buckets, so chains stay short.  The hash is SipHash-2-4 (Aumasson and
 * Bernstein) with a key drawn from OpenSSL's RNG at first use: names come
 * from clients, and an unkeyed hash would let them collide on purpose.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "hmap.h"

struct hmap_entry {
    HmapEntry *next;
    uint64_t hash;
    const char *key;
    void *value;
};

/* ---------------------------------------------------------------- SipHash-2-4 */

static uint64_t sip_key[2];
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_init(void)
{
    if (RAND_bytes((unsigned char *)sip_key, sizeof(sip_key)) != 1) {
        /* no entropy: still a valid hash, just not a secret one */
        sip_key[0] = 0x736f6d6570736575ULL;
        sip_key[1] = 0x646f72616e646f6dULL;
    }
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t hmap_hash(const void *data, size_t len)
{
    pthread_once(&sip_once, sip_init);
    const uint8_t *in = data;
    uint64_t k0 = sip_key[0], k1 = sip_key[1];
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---------------------------------------------------------------- table */

void hmap_init(Hmap *m)
{
    memset(m, 0, sizeof(*m));
}

void hmap_free(Hmap *m)
{
    if (m->buckets) {
        for (uint32_t i = 0; i <= m->mask; i++) {
            HmapEntry *e = m->buckets[i];
            while (e) {
                HmapEntry *next = e->next;
                free(e);
                e = next;
            }
        }
    }
    free(m->buckets);
    hmap_init(m);
}

static HmapEntry **hmap_slot(const Hmap *m, const char *key, uint64_t h)
{
    HmapEntry **pp = &m->buckets[h & m->mask];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

void *hmap_get(const Hmap *m, const char *key)
{
    if (!m->buckets) return NULL;
    HmapEntry *e = *hmap_slot(m, key, hmap_hash(key, strlen(key)));
    return e ? e->value : NULL;
}

static int hmap_grow(Hmap *m)
{
    uint32_t n = m->buckets ? (m->mask + 1) * 2 : 16;
    HmapEntry **nb = calloc(n, sizeof(*nb));
    if (!nb) return -1;
    if (m->buckets) {
        for (uint32_t i = 0; i <= m->mask; i++) {
            HmapEntry *e = m->buckets[i];
            while (e) {
                HmapEntry *next = e->next;
                e->next = nb[e->hash & (n - 1)];
                nb[e->hash & (n - 1)] = e;
                e = next;
            }
        }
        free(m->buckets);
    }
    m->buckets = nb;
    m->mask = n - 1;
    return 0;
}

int hmap_put(Hmap *m, const char *key, void *value)
{
    if ((!m->buckets || m->count > m->mask) && hmap_grow(m) < 0 && !m->buckets) return -1;
    uint64_t h = hmap_hash(key, strlen(key));
    HmapEntry **pp = hmap_slot(m, key, h);
    if (*pp) {
        (*pp)->key = key;
        (*pp)->value = value;
        return 0;
    }
    HmapEntry *e = malloc(sizeof(*e));
    if (!e) return -1;
    e->next = NULL;
    e->hash = h;
    e->key = key;
    e->value = value;
    *pp = e;
    m->count++;
    return 0;
}

void *hmap_remove(Hmap *m, const char *key)
{
    if (!m->buckets) return NULL;
    HmapEntry **pp = hmap_slot(m, key, hmap_hash(key, strlen(key)));
    HmapEntry *e = *pp;
    if (!e) return NULL;
    void *v = e->value;
    *pp = e->next;
    free(e);
    m->count--;
    return v;
}

void hmap_foreach(const Hmap *m, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
    if (!m->buckets) return;
    for (uint32_t i = 0; i <= m->mask; i++)
        for (HmapEntry *e = m->buckets[i]; e; e = e->next)
            fn(e->key, e->value, arg);
}
