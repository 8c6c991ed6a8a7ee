/*
 * hmap.h — a string-keyed hash table of pointers.
 *
 * Used wherever a name is looked up on a path a client can drive (databases,
 * users and pools by name, configuration entries, caches), so that lookups
 * cost the same with fifty thousand entries as with five.  The table does
 * not copy keys: the key string belongs to the value's object and must stay
 * unchanged while the entry exists (remove the entry before freeing it).
 *
 * Keys are whole NUL-terminated strings, compared whole: nothing is ever
 * identified by a truncated name.  The hash is seeded per process, so an
 * attacker who chooses names cannot aim them all at one bucket.
 */
#ifndef PGFUNNEL_HMAP_H
#define PGFUNNEL_HMAP_H

#include "types.h"

typedef struct hmap_entry HmapEntry;

typedef struct hmap {
    HmapEntry **buckets;
    uint32_t mask; /* bucket count - 1; 0 with no buckets yet */
    uint32_t count;
} Hmap;

/* A zeroed Hmap is an empty table; hmap_init() is the same. */
void hmap_init(Hmap *m);
/* Free the table (not the values). */
void hmap_free(Hmap *m);

void *hmap_get(const Hmap *m, const char *key);
/* Insert or replace.  Returns 0, or -1 when out of memory. */
int hmap_put(Hmap *m, const char *key, void *value) WUR;
/* Remove; returns the value that was there, or NULL. */
void *hmap_remove(Hmap *m, const char *key);

/* Seeded 64-bit hash of a byte string (also for other tables). */
uint64_t hmap_hash(const void *data, size_t len);

/* Visit every entry; fn may not change the table. */
void hmap_foreach(const Hmap *m, void (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
