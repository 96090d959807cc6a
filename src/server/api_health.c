/* Health and metadata: /v2 (KServe server metadata), liveness, readiness, the model list
 * (/v1/models) and KServe's per-model metadata and readiness. */
#include "server/http_internal.h"

enum MHD_Result api_server_meta(http_req *r) {
    return http_respond_json(r, 200, json_pack("{s:s,s:s,s:[s,s,s]}", "name", "itscam", "version", itscam_version(),
                                               "extensions", "binary_tensor_data", "parameters", "model_repository"));
}

enum MHD_Result api_live(http_req *r) {
    return http_respond_json(r, 200, json_pack("{s:b}", "live", 1));
}

/* Not ready while loading, and no longer once draining, so that balancers stop sending. */
enum MHD_Result api_ready(http_req *r) {
    int ok = atomic_load(&r->s->ready) && !atomic_load(&r->s->draining);
    return http_respond_json(r, ok ? 200 : 503, json_pack("{s:b}", "ready", ok));
}

static json_t *model_json(srv_model *m) {
    const itscam_model_info *info = itscam_model_get_info(m->model);
    srv_model_desc d;
    srv_model_describe(m, &d);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "input", http_dims_json(info->input_dims, 4));
    json_object_set_new(o, "imgsz", json_pack("[ii]", info->imgsz[0], info->imgsz[1]));
    json_object_set_new(o, "classes", json_integer(info->num_classes));
    json_object_set_new(o, "precision", json_string(d.precision));
    json_object_set_new(o, "backend", json_string(d.backend));
    json_object_set_new(o, "active_backend", json_string(d.active_backend));
    json_object_set_new(o, "max_batch", json_integer(d.max_batch));
    json_object_set_new(o, "ready", json_boolean(atomic_load(&m->ready)));
    return o;
}

enum MHD_Result api_models(http_req *r) {
    srv_server *s = r->s;
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++) json_array_append_new(arr, model_json(s->reg->models[i]));
    pthread_rwlock_unlock(&s->reg_lock);
    return http_respond_json(r, 200, json_pack("{s:o}", "models", arr));
}

enum MHD_Result api_model_meta(http_req *r) {
    srv_model *m = r->model;
    const itscam_model_info *info = itscam_model_get_info(m->model);
    json_t *in = json_pack("{s:s,s:s,s:o}", "name", info->input_name ? info->input_name : "images", "datatype", "FP32",
                           "shape", http_dims_json(info->input_dims, 4));
    json_t *out = json_pack("{s:s,s:s,s:o}", "name", info->output_name ? info->output_name : "output0", "datatype",
                            "FP32", "shape", http_dims_json(m->out_dims, m->out_ndim));
    json_t *o = json_pack("{s:s,s:[s],s:s,s:[o],s:[o]}", "name", m->name, "versions", "1", "platform", "onnx",
                          "inputs", in, "outputs", out);
    return http_respond_json(r, 200, o);
}

enum MHD_Result api_model_ready(http_req *r) {
    int ok = atomic_load(&r->model->ready);
    return http_respond_json(r, ok ? 200 : 503, json_pack("{s:s,s:b}", "name", r->model->name, "ready", ok));
}
