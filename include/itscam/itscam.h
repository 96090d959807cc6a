/* itscam: the public contract of libitscam (status codes, models, sessions, detector).
 *
 * Everything the library promises is in this header; anything under src/ is private.
 * Conventions:
 *  - Every fallible call returns an itscam_status. On error a readable detail message
 *    (naming the file, node, field or byte offset) is available from itscam_last_error()
 *    on the same thread until the next failing call on that thread.
 *  - Handles are opaque; every *_free/_destroy accepts NULL.
 *  - The library never prints and never exits; logging goes through itscam_log_set().
 *  - A model is immutable once loaded and may be shared by any number of threads.
 *    A session (and a detector) is used by one thread at a time.
 */
#ifndef ITSCAM_ITSCAM_H
#define ITSCAM_ITSCAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ITSCAM_BUILDING) && defined(__GNUC__)
#define ITSCAM_API __attribute__((visibility("default")))
#else
#define ITSCAM_API
#endif

#define ITSCAM_VERSION_MAJOR 0
#define ITSCAM_VERSION_MINOR 1
#define ITSCAM_VERSION_PATCH 0

/* Stable numbers: never reuse or renumber. */
typedef enum itscam_status {
    ITSCAM_OK = 0,
    ITSCAM_ERR_INVALID_ARG = 1,  /* a NULL or out-of-range argument */
    ITSCAM_ERR_NOMEM = 2,        /* an allocation failed */
    ITSCAM_ERR_IO = 3,           /* a file could not be opened or read */
    ITSCAM_ERR_MODEL = 4,        /* the model file is malformed or inconsistent */
    ITSCAM_ERR_UNSUPPORTED = 5,  /* a valid model uses something itscam cannot run */
    ITSCAM_ERR_SHAPE = 6,        /* tensor shapes do not agree */
    ITSCAM_ERR_IMAGE = 7,        /* an image could not be decoded or is unusable */
    ITSCAM_ERR_BACKEND = 8,      /* the backend failed (oneDNN, CUDA) */
    ITSCAM_ERR_NOT_FOUND = 9,    /* a named backend, model or file does not exist */
    ITSCAM_ERR_INTERNAL = 10     /* a bug in itscam: please report it */
} itscam_status;

ITSCAM_API const char *itscam_strerror(itscam_status s);
/* Detail of the last failure on the calling thread ("" if none). Valid until the next
 * failing itscam call on this thread. */
ITSCAM_API const char *itscam_last_error(void);
ITSCAM_API const char *itscam_version(void);

enum { ITSCAM_LOG_ERROR = 0, ITSCAM_LOG_WARN = 1, ITSCAM_LOG_INFO = 2, ITSCAM_LOG_DEBUG = 3 };
typedef void (*itscam_log_fn)(int level, const char *msg, void *user);
/* Install a log callback (NULL: logging off, the default) and the most verbose level
 * delivered. Not thread-safe against concurrent logging: call it at start-up. */
ITSCAM_API void itscam_log_set(itscam_log_fn fn, void *user, int max_level);

/* Backends compiled into this build, as a NULL-terminated list of names ("ref", "cpu"). */
ITSCAM_API const char *const *itscam_backends(void);
/* 1 when backend `name` runs on a device (a GPU) and so has a breaker and a CPU fallback; 0 for host backends or unknown names. */
ITSCAM_API int itscam_backend_is_device(const char *name);
/* Describe the kernels a backend runs here (for cpu: "oneDNN 3.x, isa avx2, ..."), written
 * into buf (n bytes, always NUL-terminated when n > 0). backend NULL: the default one.
 * Returns buf, or NULL when the backend is not compiled in. */
ITSCAM_API const char *itscam_backend_describe(const char *backend, char *buf, size_t n);
/* Device memory of a GPU backend ("cuda"): bytes itscam holds, free and total on the
 * device. ITSCAM_ERR_NOT_FOUND for backends without device memory or without a GPU. */
ITSCAM_API itscam_status itscam_backend_memory(const char *backend, size_t *used, size_t *free_bytes,
                                               size_t *total);
/* What a backend's runs did, summed over every program of the process since it started:
 * runs, and the data-movement steps they executed. A reorder changes a tensor's layout;
 * a copy moves bytes without changing layout or type (a Split part, a Concat input
 * copied into its window), the kind a better plan avoids; a conversion changes the data
 * type (fp32 to bf16, quantizing to u8 and back). Per inference: divide by runs.
 * ITSCAM_ERR_UNSUPPORTED for backends that keep no counters. */
typedef struct itscam_backend_counters {
    uint64_t runs;
    uint64_t reorders;        /* layout changes */
    uint64_t copies;          /* same layout, same type */
    uint64_t conversions;     /* data type changes */
} itscam_backend_counters;
ITSCAM_API itscam_status itscam_backend_get_counters(const char *backend, itscam_backend_counters *out);

/* ---------------------------------------------------------------------------------
 * Models and sessions: raw tensor in, raw tensors out.
 * --------------------------------------------------------------------------------- */
typedef struct itscam_model itscam_model;
typedef struct itscam_session itscam_session;

/* Load an ONNX model. On success *out owns the model; free with itscam_model_free. */
ITSCAM_API itscam_status itscam_model_load(const char *path, itscam_model **out);
/* Same from memory; `name` is used in messages. The buffer is not kept. */
ITSCAM_API itscam_status itscam_model_load_buffer(const void *buf, size_t len, const char *name,
                                                  itscam_model **out);
ITSCAM_API void itscam_model_free(itscam_model *m);

/* Ultralytics metadata; pointers live as long as the model. */
typedef struct itscam_model_info {
    const char *input_name;
    int64_t input_dims[4];       /* N,C,H,W; -1 where the model leaves it symbolic */
    const char *output_name;
    int num_classes;             /* 0 when unknown */
    const char *const *class_names; /* num_classes entries; NULL when the model has none */
    int imgsz[2];                /* H, W from metadata or the input shape */
    int stride;                  /* from metadata, 32 when absent */
    const char *task;            /* "detect", ... or "" */
    int end2end;                 /* 1 when the head is the NMS-free [N,300,6] form */
    int is_quantized;            /* 1 when the graph holds int8 operators */
} itscam_model_info;
ITSCAM_API const itscam_model_info *itscam_model_get_info(const itscam_model *m);

typedef struct itscam_session_params {
    const char *backend;  /* "ref", "cpu" (default "cpu" when compiled in) */
    int threads;          /* 0: backend default */
    /* "fp32" (default), "bf16", "int8" or "auto" (the fastest mode this CPU runs within
     * the accuracy budget; itscam_session_precision() says which was picked). */
    const char *precision;
    /* int8: activation ranges written by `itscam calibrate` (NULL: none; a QDQ model
     * needs none). */
    const char *calib_path;
    /* GPU backends: 1 to fail when no GPU is usable, instead of running on the cpu
     * backend (the default, said once in the log). While the backend's circuit breaker
     * is open, runs go to the cpu backend either way, unless this is set. */
    int no_fallback;
    /* GPU backends: the device index (-1, the default: ITSCAM_CUDA_DEVICE or 0). */
    int device;
} itscam_session_params;
ITSCAM_API itscam_session_params itscam_session_default_params(void);

/* Create a session on a model. The model must outlive the session. */
ITSCAM_API itscam_status itscam_session_create(const itscam_model *m, const itscam_session_params *p,
                                               itscam_session **out);
ITSCAM_API void itscam_session_free(itscam_session *s);
/* The precision the session runs in ("fp32", "bf16", "int8"), after "auto" is resolved. */
ITSCAM_API const char *itscam_session_precision(const itscam_session *s);

/* Run the model on one fp32 NCHW input of shape dims[0..3]. On success *out points to the
 * first output (fp32), owned by the session and valid until the next run or free;
 * out_dims receives its shape (up to 8 dims) and *out_ndim its rank. */
ITSCAM_API itscam_status itscam_session_run(itscam_session *s, const float *input, const int64_t dims[4],
                                            const float **out, int64_t out_dims[8], int *out_ndim);

/* The backend the session's last run actually used ("cuda", or "cpu" after a fallback). */
ITSCAM_API const char *itscam_session_backend(const itscam_session *s);

/* ---------------------------------------------------------------------------------
 * Circuit breaker of a GPU backend (one per backend in the process).
 * --------------------------------------------------------------------------------- */
typedef enum itscam_breaker_state {
    ITSCAM_BREAKER_CLOSED = 0,     /* runs go to the GPU */
    ITSCAM_BREAKER_OPEN = 1,       /* runs go to the CPU until the open period ends */
    ITSCAM_BREAKER_HALF_OPEN = 2   /* a few probe runs go to the GPU */
} itscam_breaker_state;

typedef struct itscam_breaker_config {
    int failure_threshold;   /* consecutive failures that open it (15) */
    int oom_threshold;       /* consecutive out-of-memory failures that open it (3) */
    int open_ms;             /* time open before half-open (30000) */
    int half_open_probes;    /* successful probes that close it again (10) */
} itscam_breaker_config;

typedef struct itscam_breaker_info {
    itscam_breaker_state state;
    int forced_cpu;          /* switched to the CPU by hand (itscam_breaker_force) */
    int consecutive_failures, consecutive_oom;
    uint64_t failures, oom_failures, successes, fallback_runs;
    uint64_t transitions[3][3]; /* [from][to] */
    double ms_in_state;      /* since the last transition */
    itscam_breaker_config config;
} itscam_breaker_info;

ITSCAM_API itscam_breaker_config itscam_breaker_default_config(void);
/* Set the thresholds of a backend's breaker ("cuda"). */
ITSCAM_API itscam_status itscam_breaker_configure(const char *backend, const itscam_breaker_config *c);
ITSCAM_API itscam_status itscam_breaker_get(const char *backend, itscam_breaker_info *out);
/* 1: send every run to the CPU until called again with 0 (which closes the breaker). */
ITSCAM_API itscam_status itscam_breaker_force(const char *backend, int force_cpu);
ITSCAM_API const char *itscam_breaker_state_name(itscam_breaker_state s);

/* ---------------------------------------------------------------------------------
 * Detector: images in, boxes out.
 * --------------------------------------------------------------------------------- */
typedef struct itscam_detector itscam_detector;

/* Boxes per image: the default of itscam_detector_params.max_det, and the most any
 * detector, request or configuration may ask for (it bounds each result's allocation). */
#define ITSCAM_MAX_DET_DEFAULT 300
#define ITSCAM_MAX_DET_LIMIT 10000

typedef struct itscam_detector_params {
    const char *backend;   /* as in itscam_session_params */
    int threads;
    float conf;            /* keep boxes whose best class score is > conf (0.25) */
    float iou;             /* NMS: IoU above this suppresses (0.7) */
    int max_det;           /* at most this many boxes per image (ITSCAM_MAX_DET_DEFAULT,
                              at most ITSCAM_MAX_DET_LIMIT) */
    int agnostic_nms;      /* 1: NMS across classes (0) */
    const int *classes;    /* optional filter: keep only these class ids */
    int num_classes_filter;
    const char *precision; /* as in itscam_session_params */
    const char *calib_path;
    int no_fallback;       /* as in itscam_session_params */
    int device;            /* as in itscam_session_params (-1 default) */
} itscam_detector_params;
ITSCAM_API itscam_detector_params itscam_detector_default_params(void);

typedef struct itscam_detection {
    int class_id;
    const char *class_name; /* owned by the detector's model; "" when unnamed */
    float score;
    float box[4];           /* x1, y1, x2, y2 in original image pixels, clipped */
} itscam_detection;

typedef struct itscam_result {
    int width, height;      /* of the original image */
    int count;
    itscam_detection *dets; /* owned by the result: release with itscam_result_clear */
    double ms_decode, ms_preprocess, ms_inference, ms_postprocess;
} itscam_result;
ITSCAM_API void itscam_result_clear(itscam_result *r);

typedef enum itscam_pixfmt { ITSCAM_PIX_BGR8 = 0, ITSCAM_PIX_RGB8 = 1 } itscam_pixfmt;
typedef struct itscam_image {
    const uint8_t *data;
    int width, height;
    int stride;             /* bytes per row; 0 means width*3 */
    itscam_pixfmt format;
} itscam_image;

/* Load the model at `model_path` and prepare a session. params may be NULL (defaults). */
ITSCAM_API itscam_status itscam_detector_create(const char *model_path, const itscam_detector_params *params,
                                                itscam_detector **out);
/* Create a detector on an already loaded model (shared; must outlive the detector). */
ITSCAM_API itscam_status itscam_detector_create_from_model(const itscam_model *m,
                                                           const itscam_detector_params *params,
                                                           itscam_detector **out);
ITSCAM_API void itscam_detector_free(itscam_detector *d);
ITSCAM_API const itscam_model_info *itscam_detector_info(const itscam_detector *d);
/* The precision the detector's session runs in, as itscam_session_precision(). */
ITSCAM_API const char *itscam_detector_precision(const itscam_detector *d);

/* Detect on encoded JPEG or PNG bytes. *out is filled (clear it with itscam_result_clear). */
ITSCAM_API itscam_status itscam_detect_encoded(itscam_detector *d, const void *bytes, size_t len,
                                               itscam_result *out);
/* Detect on a raw 8-bit frame. */
ITSCAM_API itscam_status itscam_detect_image(itscam_detector *d, const itscam_image *img, itscam_result *out);
/* Detect on n frames as one batch (falls back to one at a time for static-batch models).
 * out must hold n results. */
ITSCAM_API itscam_status itscam_detect_batch(itscam_detector *d, const itscam_image *imgs, int n,
                                             itscam_result *out);

/* As itscam_detect_batch, with postprocessing parameters per image (conf, iou, max_det,
 * agnostic_nms, classes; the backend, threads and precision fields are ignored). params
 * may be NULL, and so may params[i]: the detector's own. A max_det above the detector's
 * is capped at it. The server uses this to batch requests that ask for different things. */
ITSCAM_API itscam_status itscam_detect_batch_params(itscam_detector *d, const itscam_image *imgs, int n,
                                                    const itscam_detector_params *const *params,
                                                    itscam_result *out);
/* The detector's session, for raw tensor requests on the same weights and thread. */
ITSCAM_API itscam_session *itscam_detector_session(itscam_detector *d);

#ifdef __cplusplus
}
#endif
#endif
