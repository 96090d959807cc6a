/* What the camera source tests (test_stream, test_rtsp) share. */
#ifndef ITSCAM_CHECK_SOURCE_H
#define ITSCAM_CHECK_SOURCE_H

#include "core/core.h"
#include "stream/source.h"

#include <unistd.h>

/* Wait (up to ms) until the source is in state st; returns the final info. */
static inline it_source_info wait_state(it_source *s, it_stream_state st, int ms) {
    it_source_info info;
    double end = it_now_ms() + ms;
    do {
        it_source_state(s, &info);
        if (info.state == st) break;
        usleep(10000);
    } while (it_now_ms() < end);
    return info;
}

#endif
