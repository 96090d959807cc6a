/* The embedded store: one SQLite database (DIR/itscam.db) holding what the server must
 * remember across restarts (cameras changed through the API; events in a later issue). */
#ifndef ITSCAM_SINKS_STORE_H
#define ITSCAM_SINKS_STORE_H

#include "core/core.h"
#include "sinks/camdef.h"

#include <stddef.h>

typedef struct it_store it_store;

/* A camera id as stored in a tombstone list. */
typedef char it_cam_id[IT_CAM_ID_MAX + 1];

/* Open (creating when absent) dir (mode 0700, parents too) and dir/itscam.db (0600), in
 * WAL mode, and bring its schema up to date (PRAGMA user_version counts the migrations
 * applied). A file that is not a database, is damaged, or was written by a newer itscam
 * fails with a message naming it; nothing crashes. Returns 0 with *out set, or -1 with
 * *out NULL and the reason in err. Close with it_store_close. */
int it_store_open(const char *dir, it_store **out, char *err, size_t errlen);

/* Every call below is thread-safe (one mutex per store) and returns ITSCAM_OK or an error
 * whose detail is in itscam_last_error(). */

/* Insert or replace a camera (the JSON of it_camdef_to_json(c, 0): credentials included,
 * hence the file modes); clears a tombstone of the same id. */
itscam_status it_store_camera_put(it_store *st, const it_camdef *c);
/* Mark a camera deleted: a tombstone row that outlives the YAML file's definition of the
 * same id (see it_cameras_merge). Deleting an id the store does not know still writes
 * the tombstone. */
itscam_status it_store_camera_delete(it_store *st, const char *id);
/* Every stored camera, ordered by id: the live ones into *defs (*n of them) and the
 * tombstones into *deleted (*n_deleted). Both arrays are allocated (free them with free()
 * or it_free; NULL when empty). A row that no longer parses fails naming its id. */
itscam_status it_store_cameras(it_store *st, it_camdef **defs, int *n, it_cam_id **deleted, int *n_deleted);
/* The storage dir the store was opened with (snapshot paths are relative to it, see
 * it_snapshot_path in sinks/events.h); valid until it_store_close. */
const char *it_store_dir(const it_store *st);
/* Close the database (checkpointing the WAL). NULL is harmless. */
void it_store_close(it_store *st);

/* The cameras a server runs, from the configuration's (YAML, environment, flags) and the
 * store's:
 *   - a camera with a row in the store (changed or created through the API) is the
 *     store's definition, whatever the configuration says about that id;
 *   - a camera deleted through the API (a tombstone) stays deleted, even when the
 *     configuration still lists it;
 *   - a configuration camera with no row is used as written.
 * The configuration's order first, then the store's other cameras by id. *out is
 * allocated (free()/it_free; NULL when empty). ITSCAM_ERR_INVALID_ARG when the result would
 * hold more than IT_CAM_MAX cameras, ITSCAM_ERR_NOMEM. */
itscam_status it_cameras_merge(const it_camdef *config, int nconfig, const it_camdef *db, int ndb,
                               const it_cam_id *deleted, int ndeleted, it_camdef **out, int *n);

#endif
