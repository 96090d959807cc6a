/* Temporary: which backends run on a device. The real one arrives with the backend table;
 * this file goes when it is merged. */
#include "itscam/itscam.h"

#include <string.h>

int itscam_backend_is_device(const char *name) {
    return name && !strcmp(name, "cuda");
}
