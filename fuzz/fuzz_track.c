/* libFuzzer target: the detections file of `itscam track`, then a replay of what it
 * accepts through ByteTrack. A failure must leave a message and nothing allocated; an
 * accepted file must replay without error, and every track must point at a detection of
 * its frame with a positive id. */
#include "track/bytetrack.h"
#include "track/track_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    it_track_input in;
    if (it_track_input_parse((const char *)data, size, &in)) {
        if (in.frames || in.dets || !itscam_last_error()[0]) __builtin_trap();
        return 0;
    }
    it_tracker *t = it_tracker_new(NULL);
    static it_track_out out[IT_TRACK_MAX_TRACKS];
    if (!t) __builtin_trap();
    for (int i = 0; i < in.n_frames && i < 500; i++) {
        const it_track_frame *fr = &in.frames[i];
        int n = it_tracker_update(t, fr->dets, fr->n, out, IT_TRACK_MAX_TRACKS);
        if (n < 0) {
            /* only too many live tracks may be refused for a file the reader accepted */
            if (!strstr(itscam_last_error(), "max_tracks")) __builtin_trap();
            break;
        }
        for (int k = 0; k < n && k < IT_TRACK_MAX_TRACKS; k++)
            if (out[k].track_id < 1 || out[k].det_index < 0 || out[k].det_index >= fr->n) __builtin_trap();
    }
    it_tracker_free(t);
    it_track_input_free(&in);
    return 0;
}
