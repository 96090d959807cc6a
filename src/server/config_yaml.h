/* Private to the configuration readers (config.c, config_cameras.c): what the settings
 * reader and the camera list reader share about files and YAML. */
#ifndef ITSCAM_SERVER_CONFIG_YAML_H
#define ITSCAM_SERVER_CONFIG_YAML_H

#include <stddef.h>
#include <yaml.h>

/* The top-level YAML key of the camera list, and the environment prefix of cameras. */
#define SRV_CAMERAS_KEY "cameras"
#define SRV_CAMERAS_ENV "ITSCAM__CAMERAS__"

/* Read a whole configuration file, at most 1 MiB (larger is a wrong path, not a
 * configuration); *out is malloc'd and NUL-terminated. 0, or -1 naming path in err. */
int srv_read_bounded(const char *path, char **out, size_t *len, char *err, size_t errlen);
/* A libyaml parser's failure as "PATH:LINE: YAML syntax error: ...". */
void srv_yaml_syntax_error(const yaml_parser_t *p, const char *path, char *err, size_t errlen);

#endif
