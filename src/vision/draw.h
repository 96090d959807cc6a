/* Drawing detections on BGR images: 2-pixel boxes in a per-class colour and bitmap-font labels. */
#ifndef ITSCAM_VISION_DRAW_H
#define ITSCAM_VISION_DRAW_H

#include "vision/image.h"

/* Ultralytics' 20-colour palette, as BGR, cycled by class id. */
void it_class_color(int class_id, uint8_t bgr[3]);

/* Rectangle outline with corners (x1,y1)-(x2,y2) inclusive, `thickness` pixels inward;
 * any coordinates are accepted and clipped. */
void it_draw_rect(it_image *img, int x1, int y1, int x2, int y2, const uint8_t bgr[3], int thickness);
void it_fill_rect(it_image *img, int x1, int y1, int x2, int y2, const uint8_t bgr[3]);

/* Text in the built-in 5x7 font (6x8 cells, printable ASCII; others drawn as '?'),
 * magnified by `scale`, top-left at (x, y), clipped. Returns the width in pixels. */
int it_draw_text(it_image *img, int x, int y, const char *text, const uint8_t fg[3], int scale);
int it_text_width(const char *text, int scale);

/* The label of a detection, "car 0.87", or "car #12 0.87" when track_id > 0 (the
 * tracker's id; 0 or less: none). The name is the detection's class_name when non-empty,
 * else names[class_id] when given, else the class id. Written NUL-terminated, truncated to
 * fit `size` bytes; returns buf. */
char *it_detection_label(const itscam_detection *d, int64_t track_id, const char *const *names, int n_names,
                         char *buf, size_t size);

/* Boxes and it_detection_label labels for n detections (box in image pixels); track_ids
 * (n entries, may be NULL) are the tracker's ids of the detections, 0 for none. */
void it_draw_detections(it_image *img, const itscam_detection *dets, const int64_t *track_ids, int n,
                        const char *const *names, int n_names);

#endif
