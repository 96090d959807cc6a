/* The outbox's reading side (issue 12, section 5): what a publisher of one target
 * (it_store_outbox_targets) has not had acknowledged yet, oldest first, and the deletion
 * of rows once its broker confirmed them. Rows are written by it_store_events_insert in
 * the event's own transaction, so an event is either stored with every target's row or
 * not at all: deleting only after the broker's acknowledgement gives at-least-once
 * delivery across broker outages and restarts of either side.
 *
 * Every call is thread-safe (the store's mutex, held for one short statement or one
 * transaction) and returns ITSCAM_OK or an error whose detail is in itscam_last_error(). */
#ifndef ITSCAM_SINKS_OUTBOX_H
#define ITSCAM_SINKS_OUTBOX_H

#include "sinks/events.h"

#include <stdint.h>

#define IT_OUTBOX_FETCH_MAX 1000 /* events per fetch at most */

/* The events of target's pending rows with id > after_id, in id order, at most limit
 * (clamped to [1, IT_OUTBOX_FETCH_MAX]); out holds at least limit events. after_id 0
 * starts from the oldest pending event. Ids are assigned and committed under the store's
 * lock in increasing order, so a row with an id at or below one already returned can
 * never appear later: a publisher may page with after_id = the last id it sent. */
itscam_status it_outbox_fetch(it_store *st, const char *target, int64_t after_id, int limit, it_store_event *out,
                              int *n);

/* Delete target's rows of these n events (acknowledged by the broker), in one
 * transaction. Ids without a row (already deleted, or removed by retention) are ignored. */
itscam_status it_outbox_ack(it_store *st, const char *target, const int64_t *ids, int n);

/* The number of target's rows still pending. */
itscam_status it_outbox_pending(it_store *st, const char *target, int64_t *n);

/* The number of stored line_cross events of one key (camera, details.line, class name,
 * details.direction) with id <= upto_id: what a running count of that key reads once the
 * event upto_id is counted. An empty class_name matches events without a class. */
itscam_status it_store_line_count(it_store *st, const char *camera, const char *line, const char *class_name,
                                  const char *direction, int64_t upto_id, int64_t *n);

#endif
