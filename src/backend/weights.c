/* The model's cache of prepared weights, shared by its sessions (see plan.h). A lock and a
 * list: entries are made at compile time only, a few hundred per model, never per run. */
#include "backend/backend.h"

#include <pthread.h>
#include <string.h>

typedef struct entry {
    char *key;
    void *data;
    size_t bytes;
    struct entry *next;
} entry;

struct it_weight_cache {
    pthread_mutex_t lock;
    entry *head;
    size_t total;
};

it_weight_cache *it_weight_cache_new(void) {
    it_weight_cache *c = it_calloc(1, sizeof *c);
    if (c && pthread_mutex_init(&c->lock, NULL) != 0) {
        it_free(c);
        return NULL;
    }
    return c;
}

void it_weight_cache_free(it_weight_cache *c) {
    if (!c) return;
    for (entry *e = c->head, *n; e; e = n) {
        n = e->next;
        it_aligned_free(e->data);
        it_free(e->key);
        it_free(e);
    }
    pthread_mutex_destroy(&c->lock);
    it_free(c);
}

size_t it_weight_cache_bytes(const it_weight_cache *c) { return c ? c->total : 0; }

itscam_status it_weight_cache_get(it_weight_cache *c, const char *key, size_t bytes, it_weight_fill_fn fill,
                                  void *ctx, const void **out) {
    *out = NULL;
    pthread_mutex_lock(&c->lock);
    for (entry *e = c->head; e; e = e->next)
        if (!strcmp(e->key, key)) {
            pthread_mutex_unlock(&c->lock);
            if (e->bytes != bytes)
                return it_err(ITSCAM_ERR_INTERNAL, "weight cache: '%s' is %zu bytes, %zu asked", key, e->bytes, bytes);
            *out = e->data;
            return ITSCAM_OK;
        }
    itscam_status st = ITSCAM_OK;
    entry *e = it_calloc(1, sizeof *e);
    if (e) {
        e->key = it_strdup(key);
        e->data = it_aligned_alloc(bytes);
        e->bytes = bytes;
    }
    if (!e || !e->key || !e->data) {
        st = it_err(ITSCAM_ERR_NOMEM, "out of memory for weights '%s' (%zu bytes)", key, bytes);
    } else {
        memset(e->data, 0, bytes);
        st = fill(e->data, bytes, ctx);
    }
    if (st != ITSCAM_OK) {
        if (e) {
            it_aligned_free(e->data);
            it_free(e->key);
            it_free(e);
        }
        pthread_mutex_unlock(&c->lock);
        return st;
    }
    e->next = c->head;
    c->head = e;
    c->total += bytes;
    pthread_mutex_unlock(&c->lock);
    *out = e->data;
    return ITSCAM_OK;
}
