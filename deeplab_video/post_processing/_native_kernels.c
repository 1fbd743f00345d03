/* Native kernels of post-processing on the CPU (the Python runner; see native_merge.py).
 *
 * maskwise_pixels: the pixel pass of kMaX's mask-wise merge, fused: resize, softmax,
 * binary masks, sets.
 *
 * For every pixel of a clip at input resolution this computes, in one pass over rows
 * that stay in cache, what `panoptic_inference` otherwise builds from full-resolution
 * [num_pixels, num_queries] tensors:
 *
 *   - the mask logits, bilinearly resized from stride 4 with aligned corners exactly as
 *     TensorFlow's CPU ResizeBilinear kernel does (same weights, same float32 formula, no
 *     contraction into FMA, so the values are the same bits), cropped to the image;
 *   - each query's softmax probability over all queries, and whether it is above the
 *     mask threshold (the binary mask), for the class-confident queries;
 *   - the pixel's set of binary masks, as a code: the confident queries q1 < q2 < ...
 *     whose masks cover it, folded as code = code * (N + 1) + (q + 1);
 *   - the number of pixels of every code, and every query's probability summed over its
 *     binary mask.
 *
 * Exactness. TensorFlow decides "probability > threshold" with float32 log-sum-exp and
 * exp; this pass decides it with its own float32 softmax, which differs from
 * TensorFlow's by at most a few units in the last place. A decision that the two could
 * disagree on (the probability within a relative margin of the threshold) is not made
 * here: the pixel is listed as undecided, with its resized logits, and the caller
 * decides it with TensorFlow's own ops. Every other decision equals TensorFlow's.
 * Non-finite logits, or more masks on a pixel than max_masks, return an error status
 * and the caller falls back to the TensorFlow ops.
 *
 * Python: maskwise_pixels(logits, kept, num_frames, height, width, num_queries,
 *     canvas_height, canvas_width, image_height, image_width, threshold, max_masks,
 *     num_threads, codes, counts, prob_sums, undecided_pixels, undecided_logits) -> int
 *   logits           float32 [T, height, width, N], stride-4 logits of the canvas
 *   kept             uint8 [N], 1 for the class-confident queries
 *   codes            int32 [T * image_height * image_width] out: the set code, -1 undecided
 *   counts           int64 [(N + 1) ** max_masks] out: pixels of each code (decided ones)
 *   prob_sums        float64 [N] out: probability summed over the decided mask pixels
 *   undecided_pixels int32 [capacity] out: flat pixel index of the undecided pixels
 *   undecided_logits float32 [capacity, N] out: their resized logits
 * Returns the number of undecided pixels, -1 on non-finite logits or too many masks on a
 * pixel, -2 when more pixels than the capacity are undecided.
 *
 * lookup: out[i] = table[index[i]], or table[index[i] mod modulus] + index[i] (the
 * relabelling of clip-local instance ids to video ids), for int32 arrays, on all cores
 * (TensorFlow's CPU gather copies one element at a time, ~3 ns each).
 *
 * Python: lookup(table, index, modulus, add_index, out, num_threads) -> int
 *   modulus 0 indexes the table by the values themselves.
 *   Returns 0, or -1 when an index lies outside the table (out is then incomplete).
 *
 * id_extents: each id's pixel count and extent over the frames of an id map, in one pass
 * (TensorFlow needs a histogram of (id, row) and one of (id, column) pairs).
 *
 * Python: id_extents(ids, num_frames, height, width, num_ids, out, num_threads) -> int
 *   ids  int32 [T, height, width], values in [0, num_ids)
 *   out  int32 [num_ids, 5] out: count, first column, first row, last column, last row
 *        (the four 0 for an id without pixels)
 *   Returns 0, or -1 when an id lies outside [0, num_ids) (out is then incomplete).
 *
 * instance_pairs: Video-Stitch's joint histogram of (previous instance id, current
 * instance id) over one frame, instance ids being the panoptic values modulo the divisor.
 *
 * Python: instance_pairs(previous, current, divisor, num_previous, num_current, out,
 *     num_threads) -> int
 *   previous, current  int32 [height, width] panoptic frames
 *   out                int32 [num_previous + 1, num_current + 1] out: pixel counts
 *   Returns 0, 1 when a previous id is above num_previous, 2 when a current one is above
 *   num_current (out is then incomplete).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define ROW_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROW_KERNEL
#endif

#define STATUS_NOT_FINITE (-1)
#define STATUS_CAPACITY (-2)

/* Relative margin of "probability > threshold" left to TensorFlow: a constant part for the
 * float32 sums and exps, and a part growing with the logits' magnitude (TensorFlow rounds
 * log-sum-exp, which is about the largest logit, to float32). Both are several times the
 * error bound of either computation. */
#define MARGIN_CONSTANT 2e-5f
#define MARGIN_PER_LOGIT 3e-7f

typedef struct {
  int64_t lower;
  int64_t upper;
  float lerp;
} Interpolation;

/* TensorFlow's weights for align_corners=True, half_pixel_centers=False. */
static void interpolation_weights(int64_t out_size, int64_t in_size, Interpolation *weights) {
  const float scale = out_size > 1 ? (float)(in_size - 1) / (float)(out_size - 1)
                                   : (float)in_size / (float)out_size;
  for (int64_t i = 0; i < out_size; ++i) {
    const float in = (float)i * scale;
    const float in_floor = floorf(in);
    const int64_t lower = (int64_t)in_floor;
    const int64_t upper = (int64_t)ceilf(in);
    weights[i].lower = lower > 0 ? lower : 0;
    weights[i].upper = upper < in_size - 1 ? upper : in_size - 1;
    weights[i].lerp = in - in_floor;
  }
}

/* exp(x) for x <= 0 in float32 (Cephes's polynomial, about 1 ulp); x below -87 gives
 * exp(-87), which no sum of at least 1 can tell from 0. Written so that it vectorises. */
static inline float exp_non_positive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float round_magic = 12582912.0f; /* 1.5 * 2**23: adding it rounds to an integer */
  float n = x * 1.44269504088896341f + round_magic;
  n -= round_magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

typedef struct {
  /* Inputs, shared. */
  const float *logits;
  const uint8_t *kept;
  int64_t height, width, num_queries;
  int64_t image_height, image_width;
  const Interpolation *ys, *xs;
  float threshold;
  int64_t max_masks;
  /* Outputs, shared (rows of one thread never overlap another's). */
  int32_t *codes;
  /* This thread's rows [row_begin, row_end) of the T * image_height output rows. */
  int64_t row_begin, row_end;
  /* This thread's own results, merged by the caller. */
  int64_t *counts;
  double *prob_sums;
  int32_t *undecided_pixels;
  float *undecided_logits;
  int64_t capacity, num_undecided;
  int status;
} Work;

/* One source row interpolated along x: out[q * image_width + x] (queries major). */
ROW_KERNEL static void horizontal_row(const Work *w, const float *source_row, float *out) {
  const int64_t n = w->num_queries;
  for (int64_t x = 0; x < w->image_width; ++x) {
    const float *left = source_row + w->xs[x].lower * n;
    const float *right = source_row + w->xs[x].upper * n;
    const float lerp = w->xs[x].lerp;
    for (int64_t q = 0; q < n; ++q) {
      out[q * w->image_width + x] = left[q] + (right[q] - left[q]) * lerp;
    }
  }
}

typedef struct {
  float *top, *bottom; /* horizontal rows of the current lower and upper source rows */
  int64_t top_row, bottom_row;
  float *values, *exps, *maximum, *sum, *margin;
  double *column_sums; /* [N, W]: probability sums of the rows done so far */
  int32_t *code, *num_on;
  uint8_t *undecided;
} Rows;

/* Softmax, masks and codes of one output row; values[q * W + x] hold its logits. */
ROW_KERNEL static void decide_row(Work *w, Rows *r) {
  const int64_t n = w->num_queries, width = w->image_width;
  const float threshold = w->threshold;
  float *maximum = r->maximum, *sum = r->sum, *margin = r->margin;
  int32_t *code = r->code, *num_on = r->num_on;
  uint8_t *undecided = r->undecided;
  memcpy(maximum, r->values, width * sizeof(float));
  memset(sum, 0, width * sizeof(float));
  memset(code, 0, width * sizeof(int32_t));
  memset(num_on, 0, width * sizeof(int32_t));
  memset(undecided, 0, width);
  for (int64_t q = 1; q < n; ++q) {
    const float *v = r->values + q * width;
    for (int64_t x = 0; x < width; ++x) maximum[x] = v[x] > maximum[x] ? v[x] : maximum[x];
  }
  for (int64_t q = 0; q < n; ++q) {
    const float *v = r->values + q * width;
    float *e = r->exps + q * width;
    for (int64_t x = 0; x < width; ++x) {
      e[x] = exp_non_positive(v[x] - maximum[x]);
      sum[x] += e[x];
    }
  }
  for (int64_t x = 0; x < width; ++x) {
    const float magnitude = maximum[x] < 0.0f ? -maximum[x] : maximum[x];
    margin[x] = threshold * sum[x] * (MARGIN_CONSTANT + MARGIN_PER_LOGIT * magnitude);
  }
  for (int64_t q = 0; q < n; ++q) {
    if (!w->kept[q]) continue;
    const float *e = r->exps + q * width;
    const int32_t digit = (int32_t)q + 1, base = (int32_t)n + 1;
    for (int64_t x = 0; x < width; ++x) {
      const float level = threshold * sum[x];
      const int on = e[x] > level + margin[x];
      const int near = (e[x] >= level - margin[x]) & !on;
      code[x] = on ? code[x] * base + digit : code[x];
      num_on[x] += on;
      undecided[x] |= (uint8_t)near;
    }
  }
  int bad = 0;
  for (int64_t x = 0; x < width; ++x) {
    bad |= !(sum[x] - sum[x] == 0.0f) | (num_on[x] > w->max_masks);
  }
  if (bad) w->status = STATUS_NOT_FINITE;
  /* Each query's probabilities over the decided pixels of its mask, summed per column. */
  for (int64_t q = 0; q < n; ++q) {
    if (!w->kept[q]) continue;
    const float *e = r->exps + q * width;
    double *column_sums = r->column_sums + q * width;
    for (int64_t x = 0; x < width; ++x) {
      const int on = (e[x] > threshold * sum[x] + margin[x]) & !undecided[x];
      column_sums[x] += on ? (double)(e[x] / sum[x]) : 0.0;
    }
  }
}

ROW_KERNEL static void *run_rows(void *argument) {
  Work *w = (Work *)argument;
  const int64_t n = w->num_queries, width = w->image_width;
  const int64_t plane = n * width;
  Rows r;
  float *buffer = malloc(sizeof(float) * (4 * plane + 3 * width));
  int32_t *ints = malloc(sizeof(int32_t) * 2 * width);
  uint8_t *flags = malloc(width);
  double *column_sums = calloc(plane, sizeof(double));
  if (!buffer || !ints || !flags || !column_sums) {
    free(buffer);
    free(ints);
    free(flags);
    free(column_sums);
    w->status = STATUS_NOT_FINITE;
    return NULL;
  }
  r.top = buffer;
  r.bottom = buffer + plane;
  r.values = buffer + 2 * plane;
  r.exps = buffer + 3 * plane;
  r.maximum = buffer + 4 * plane;
  r.sum = r.maximum + width;
  r.margin = r.sum + width;
  r.code = ints;
  r.num_on = ints + width;
  r.undecided = flags;
  r.column_sums = column_sums;
  r.top_row = r.bottom_row = -1;
  int64_t frame = -1;
  for (int64_t row = w->row_begin; row < w->row_end && w->status == 0; ++row) {
    const int64_t t = row / w->image_height, y = row % w->image_height;
    if (t != frame) {
      frame = t;
      r.top_row = r.bottom_row = -1;
    }
    const float *frame_logits = w->logits + t * w->height * w->width * n;
    const Interpolation *wy = &w->ys[y];
    if (wy->lower != r.top_row) {
      if (wy->lower == r.bottom_row) {
        float *swap = r.top;
        r.top = r.bottom;
        r.bottom = swap;
        r.bottom_row = -1;
      } else {
        horizontal_row(w, frame_logits + wy->lower * w->width * n, r.top);
      }
      r.top_row = wy->lower;
    }
    if (wy->upper != r.bottom_row) {
      horizontal_row(w, frame_logits + wy->upper * w->width * n, r.bottom);
      r.bottom_row = wy->upper;
    }
    const float lerp = wy->lerp;
    for (int64_t i = 0; i < plane; ++i) {
      r.values[i] = r.top[i] + (r.bottom[i] - r.top[i]) * lerp;
    }
    decide_row(w, &r);
    if (w->status != 0) break;
    int32_t *codes = w->codes + row * width;
    memcpy(codes, r.code, width * sizeof(int32_t));
    /* Count codes run by run (neighbours mostly share one; no chain of increments of
     * the same counter), then take the undecided pixels out. */
    for (int64_t x = 0; x < width;) {
      int64_t end = x + 1;
      while (end < width && r.code[end] == r.code[x]) ++end;
      w->counts[r.code[x]] += end - x;
      x = end;
    }
    for (int64_t x = 0; x < width; ++x) {
      if (r.undecided[x]) {
        --w->counts[r.code[x]];
        if (w->num_undecided == w->capacity) {
          w->status = STATUS_CAPACITY;
          break;
        }
        w->undecided_pixels[w->num_undecided] = (int32_t)(row * width + x);
        float *out = w->undecided_logits + w->num_undecided * n;
        for (int64_t q = 0; q < n; ++q) out[q] = r.values[q * width + x];
        ++w->num_undecided;
        codes[x] = -1;
      }
    }
  }
  for (int64_t q = 0; q < n; ++q) {
    for (int64_t x = 0; x < width; ++x) w->prob_sums[q] += column_sums[q * width + x];
  }
  free(buffer);
  free(ints);
  free(flags);
  free(column_sums);
  return NULL;
}

/* Runs task(items + i * item_size) for i < threads: on threads - 1 new threads and the
 * calling one (inline where a thread cannot be created). Call without the GIL. */
static void run_parallel(void *(*task)(void *), void *items, size_t item_size, int64_t threads) {
  pthread_t *handles = calloc(threads, sizeof(pthread_t));
  char *base = items;
  for (int64_t i = 1; i < threads; ++i) {
    if (!handles || pthread_create(&handles[i], NULL, task, base + i * item_size) != 0) {
      task(base + i * item_size);
      if (handles) handles[i] = 0;
    }
  }
  task(base);
  for (int64_t i = 1; handles && i < threads; ++i) {
    if (handles[i]) pthread_join(handles[i], NULL);
  }
  free(handles);
}

static int get_buffer(PyObject *object, Py_buffer *view, int writable, Py_ssize_t bytes,
                      const char *name) {
  if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
    return -1;
  if (view->len != bytes) {
    PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", name, view->len, bytes);
    PyBuffer_Release(view);
    return -1;
  }
  return 0;
}

static PyObject *maskwise_pixels(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *objects[7];
  long long num_frames, height, width, num_queries, canvas_height, canvas_width;
  long long image_height, image_width, max_masks, num_threads;
  double threshold;
  if (!PyArg_ParseTuple(args, "OOLLLLLLLLdLLOOOOO", &objects[0], &objects[1], &num_frames,
                        &height, &width, &num_queries, &canvas_height, &canvas_width,
                        &image_height, &image_width, &threshold, &max_masks, &num_threads,
                        &objects[2], &objects[3], &objects[4], &objects[5], &objects[6]))
    return NULL;
  if (num_frames < 1 || height < 1 || width < 1 || num_queries < 1 || image_height < 1 ||
      image_width < 1 || image_height > canvas_height || image_width > canvas_width ||
      max_masks < 1 || num_threads < 1) {
    PyErr_SetString(PyExc_ValueError, "maskwise_pixels: invalid sizes");
    return NULL;
  }
  int64_t num_codes = 1;
  for (long long k = 0; k < max_masks; ++k) num_codes *= num_queries + 1;
  const int64_t pixels = num_frames * image_height * image_width;
  Py_buffer views[7];
  const Py_ssize_t bytes[5] = {
      (Py_ssize_t)(num_frames * height * width * num_queries * 4), (Py_ssize_t)num_queries,
      (Py_ssize_t)(pixels * 4), (Py_ssize_t)(num_codes * 8), (Py_ssize_t)(num_queries * 8)};
  const char *names[7] = {"logits", "kept", "codes", "counts", "prob_sums",
                          "undecided_pixels", "undecided_logits"};
  int acquired = 0;
  for (; acquired < 5; ++acquired) {
    if (get_buffer(objects[acquired], &views[acquired], acquired >= 2, bytes[acquired],
                   names[acquired]) < 0)
      goto release;
  }
  for (; acquired < 7; ++acquired) {
    if (PyObject_GetBuffer(objects[acquired], &views[acquired],
                           PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
      goto release;
  }
  const int64_t capacity = views[5].len / 4;
  if (views[6].len != capacity * num_queries * 4) {
    PyErr_SetString(PyExc_ValueError, "undecided_logits must hold capacity * N floats");
    goto release;
  }

  Interpolation *ys = malloc(sizeof(Interpolation) * canvas_height);
  Interpolation *xs = malloc(sizeof(Interpolation) * canvas_width);
  const int64_t threads = num_threads;
  Work *work = calloc(threads, sizeof(Work));
  int64_t *counts = calloc(threads * num_codes, sizeof(int64_t));
  double *sums = calloc(threads * num_queries, sizeof(double));
  int status = 0;
  int64_t total = 0;
  if (!ys || !xs || !work || !counts || !sums) {
    PyErr_NoMemory();
    status = -100;
  } else {
    interpolation_weights(canvas_height, height, ys);
    interpolation_weights(canvas_width, width, xs);
    const int64_t rows = num_frames * image_height;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < threads; ++i) {
      Work *w = &work[i];
      w->logits = views[0].buf;
      w->kept = views[1].buf;
      w->height = height;
      w->width = width;
      w->num_queries = num_queries;
      w->image_height = image_height;
      w->image_width = image_width;
      w->ys = ys;
      w->xs = xs;
      w->threshold = (float)threshold;
      w->max_masks = max_masks;
      w->codes = views[2].buf;
      w->row_begin = rows * i / threads;
      w->row_end = rows * (i + 1) / threads;
      w->counts = counts + i * num_codes;
      w->prob_sums = sums + i * num_queries;
      w->capacity = capacity / threads;
      w->undecided_pixels = (int32_t *)views[5].buf + i * w->capacity;
      w->undecided_logits = (float *)views[6].buf + i * w->capacity * num_queries;
    }
    run_parallel(run_rows, work, sizeof(Work), threads);
    Py_END_ALLOW_THREADS
    int64_t *out_counts = views[3].buf;
    double *out_sums = views[4].buf;
    memset(out_counts, 0, num_codes * sizeof(int64_t));
    memset(out_sums, 0, num_queries * sizeof(double));
    for (int64_t i = 0; i < threads; ++i) {
      const Work *w = &work[i];
      if (w->status != 0 && (status == 0 || w->status == STATUS_NOT_FINITE)) status = w->status;
      for (int64_t c = 0; c < num_codes; ++c) out_counts[c] += w->counts[c];
      for (int64_t q = 0; q < num_queries; ++q) out_sums[q] += w->prob_sums[q];
      /* Pack the undecided rows of all threads to the front, in pixel order. */
      if (total != i * work[0].capacity && w->num_undecided) {
        memmove((int32_t *)views[5].buf + total, w->undecided_pixels,
                w->num_undecided * sizeof(int32_t));
        memmove((float *)views[6].buf + total * num_queries, w->undecided_logits,
                w->num_undecided * num_queries * sizeof(float));
      }
      total += w->num_undecided;
    }
  }
  free(ys);
  free(xs);
  free(work);
  free(counts);
  free(sums);
  for (int i = 0; i < 7; ++i) PyBuffer_Release(&views[i]);
  if (status == -100) return NULL;
  return PyLong_FromLongLong(status != 0 ? status : total);

release:
  for (int i = 0; i < acquired; ++i) PyBuffer_Release(&views[i]);
  return NULL;
}

static inline int32_t floor_mod(int32_t value, int32_t divisor) {
  const int32_t remainder = value % divisor;
  return remainder < 0 ? remainder + divisor : remainder;
}

typedef struct {
  const int32_t *table, *index;
  int32_t *out;
  int64_t table_size, begin, end;
  int32_t modulus; /* 0: index the table by the values themselves */
  int add_index;
  int status;
} LookupWork;

static void *run_lookup(void *argument) {
  LookupWork *w = (LookupWork *)argument;
  int bad = 0;
  for (int64_t i = w->begin; i < w->end; ++i) {
    const int32_t at = w->modulus ? floor_mod(w->index[i], w->modulus) : w->index[i];
    const int inside = (at >= 0) & (at < w->table_size);
    bad |= !inside;
    w->out[i] = w->table[inside ? at : 0] + (w->add_index ? w->index[i] : 0);
  }
  w->status = bad ? -1 : 0;
  return NULL;
}

static PyObject *lookup(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *objects[3];
  long long modulus, num_threads;
  int add_index;
  if (!PyArg_ParseTuple(args, "OOLpOL", &objects[0], &objects[1], &modulus, &add_index,
                        &objects[2], &num_threads))
    return NULL;
  Py_buffer views[3];
  int acquired = 0;
  for (; acquired < 3; ++acquired) {
    const int flags = PyBUF_C_CONTIGUOUS | (acquired == 2 ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(objects[acquired], &views[acquired], flags) < 0) break;
  }
  int status = 0;
  if (acquired < 3) {
    status = -100;
  } else if (views[0].len < 4 || views[1].len != views[2].len || num_threads < 1 ||
             modulus < 0 || modulus > INT32_MAX) {
    PyErr_SetString(PyExc_ValueError,
                    "lookup: a non-empty table, out sized as index, a modulus in int32");
    status = -100;
  } else {
    const int64_t size = views[1].len / 4, threads = num_threads;
    LookupWork *work = calloc(threads, sizeof(LookupWork));
    if (!work) {
      PyErr_NoMemory();
      status = -100;
    } else {
      Py_BEGIN_ALLOW_THREADS
      for (int64_t i = 0; i < threads; ++i) {
        work[i] = (LookupWork){.table = views[0].buf,
                               .index = views[1].buf,
                               .out = views[2].buf,
                               .table_size = views[0].len / 4,
                               .begin = size * i / threads,
                               .end = size * (i + 1) / threads,
                               .modulus = (int32_t)modulus,
                               .add_index = add_index};
      }
      run_parallel(run_lookup, work, sizeof(LookupWork), threads);
      Py_END_ALLOW_THREADS
      for (int64_t i = 0; i < threads; ++i) status |= work[i].status;
    }
    free(work);
  }
  for (int i = 0; i < acquired; ++i) PyBuffer_Release(&views[i]);
  if (status == -100) return NULL;
  return PyLong_FromLong(status);
}

typedef struct {
  const int32_t *ids;
  int64_t height, width, num_ids, row_begin, row_end;
  int64_t *extents; /* [num_ids, 5]: count, min x, min y, max x, max y */
  int status;
} ExtentWork;

static void *run_extents(void *argument) {
  ExtentWork *w = (ExtentWork *)argument;
  int64_t *e = w->extents;
  for (int64_t id = 0; id < w->num_ids; ++id) {
    e[id * 5] = 0;
    e[id * 5 + 1] = w->width;
    e[id * 5 + 2] = w->height;
    e[id * 5 + 3] = -1;
    e[id * 5 + 4] = -1;
  }
  for (int64_t row = w->row_begin; row < w->row_end; ++row) {
    const int32_t *line = w->ids + row * w->width;
    const int64_t y = row % w->height;
    int32_t previous = -1;
    int64_t *slot = NULL;
    for (int64_t x = 0; x < w->width; ++x) {
      const int32_t id = line[x];
      if (id != previous) { /* Runs of one id are the common case: update at run ends. */
        if (id < 0 || id >= w->num_ids) {
          w->status = -1;
          return NULL;
        }
        previous = id;
        slot = e + id * 5;
        if (x < slot[1]) slot[1] = x;
        if (y < slot[2]) slot[2] = y;
        if (y > slot[4]) slot[4] = y;
      }
      ++slot[0];
      if (x > slot[3]) slot[3] = x;
    }
  }
  return NULL;
}

static PyObject *id_extents(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *objects[2];
  long long num_frames, height, width, num_ids, num_threads;
  if (!PyArg_ParseTuple(args, "OLLLLOL", &objects[0], &num_frames, &height, &width, &num_ids,
                        &objects[1], &num_threads))
    return NULL;
  if (num_frames < 0 || height < 0 || width < 0 || num_ids < 1 || num_threads < 1) {
    PyErr_SetString(PyExc_ValueError, "id_extents: invalid sizes");
    return NULL;
  }
  Py_buffer views[2];
  if (get_buffer(objects[0], &views[0], 0, (Py_ssize_t)(num_frames * height * width * 4),
                 "ids") < 0)
    return NULL;
  if (get_buffer(objects[1], &views[1], 1, (Py_ssize_t)(num_ids * 5 * 4), "out") < 0) {
    PyBuffer_Release(&views[0]);
    return NULL;
  }
  const int64_t threads = num_threads, rows = num_frames * height;
  ExtentWork *work = calloc(threads, sizeof(ExtentWork));
  int64_t *extents = malloc(sizeof(int64_t) * threads * num_ids * 5);
  int status = 0;
  if (!work || !extents) {
    PyErr_NoMemory();
    status = -100;
  } else {
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < threads; ++i) {
      work[i] = (ExtentWork){views[0].buf, height, width, num_ids, rows * i / threads,
                             rows * (i + 1) / threads, extents + i * num_ids * 5, 0};
    }
    run_parallel(run_extents, work, sizeof(ExtentWork), threads);
    Py_END_ALLOW_THREADS
    int32_t *out = views[1].buf;
    for (int64_t i = 0; i < threads; ++i) status |= work[i].status;
    for (int64_t id = 0; id < num_ids && status == 0; ++id) {
      int64_t total[5] = {0, width, height, -1, -1};
      for (int64_t i = 0; i < threads; ++i) {
        const int64_t *e = extents + (i * num_ids + id) * 5;
        total[0] += e[0];
        for (int k = 1; k < 3; ++k) total[k] = e[k] < total[k] ? e[k] : total[k];
        for (int k = 3; k < 5; ++k) total[k] = e[k] > total[k] ? e[k] : total[k];
      }
      out[id * 5] = (int32_t)total[0];
      for (int k = 1; k < 5; ++k) out[id * 5 + k] = total[0] ? (int32_t)total[k] : 0;
    }
  }
  free(work);
  free(extents);
  PyBuffer_Release(&views[0]);
  PyBuffer_Release(&views[1]);
  if (status == -100) return NULL;
  return PyLong_FromLong(status);
}

typedef struct {
  const int32_t *previous, *current;
  int32_t divisor, num_previous, num_current;
  int64_t begin, end;
  int64_t *counts; /* [num_previous + 1, num_current + 1] */
  int status;
} PairWork;

static void *run_pairs(void *argument) {
  PairWork *w = (PairWork *)argument;
  const int64_t columns = w->num_current + 1;
  memset(w->counts, 0, sizeof(int64_t) * (w->num_previous + 1) * columns);
  for (int64_t i = w->begin; i < w->end;) {
    const int32_t previous = floor_mod(w->previous[i], w->divisor);
    const int32_t current = floor_mod(w->current[i], w->divisor);
    if (previous > w->num_previous || current > w->num_current) {
      w->status = previous > w->num_previous ? 1 : 2;
      return NULL;
    }
    int64_t end = i + 1; /* a run of the same pair of values counts at once */
    while (end < w->end && w->previous[end] == w->previous[i] &&
           w->current[end] == w->current[i])
      ++end;
    w->counts[previous * columns + current] += end - i;
    i = end;
  }
  return NULL;
}

static PyObject *instance_pairs(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *objects[3];
  long long divisor, num_previous, num_current, num_threads;
  if (!PyArg_ParseTuple(args, "OOLLLOL", &objects[0], &objects[1], &divisor, &num_previous,
                        &num_current, &objects[2], &num_threads))
    return NULL;
  if (divisor < 1 || num_previous < 0 || num_current < 0 || num_threads < 1) {
    PyErr_SetString(PyExc_ValueError, "instance_pairs: invalid sizes");
    return NULL;
  }
  Py_buffer views[3];
  const Py_ssize_t cells = (Py_ssize_t)((num_previous + 1) * (num_current + 1));
  if (PyObject_GetBuffer(objects[0], &views[0], PyBUF_C_CONTIGUOUS) < 0) return NULL;
  if (get_buffer(objects[1], &views[1], 0, views[0].len, "current") < 0) {
    PyBuffer_Release(&views[0]);
    return NULL;
  }
  if (get_buffer(objects[2], &views[2], 1, cells * 4, "out") < 0) {
    PyBuffer_Release(&views[0]);
    PyBuffer_Release(&views[1]);
    return NULL;
  }
  const int64_t threads = num_threads, size = views[0].len / 4;
  PairWork *work = calloc(threads, sizeof(PairWork));
  int64_t *counts = malloc(sizeof(int64_t) * threads * cells);
  int status = 0;
  if (!work || !counts) {
    PyErr_NoMemory();
    status = -100;
  } else {
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < threads; ++i) {
      work[i] = (PairWork){views[0].buf, views[1].buf, (int32_t)divisor, (int32_t)num_previous,
                           (int32_t)num_current, size * i / threads, size * (i + 1) / threads,
                           counts + i * cells, 0};
    }
    run_parallel(run_pairs, work, sizeof(PairWork), threads);
    Py_END_ALLOW_THREADS
    int32_t *out = views[2].buf;
    for (int64_t i = 0; i < threads && status == 0; ++i) status = work[i].status;
    for (int64_t c = 0; c < cells && status == 0; ++c) {
      int64_t total = 0;
      for (int64_t i = 0; i < threads; ++i) total += counts[i * cells + c];
      out[c] = (int32_t)total;
    }
  }
  free(work);
  free(counts);
  for (int i = 0; i < 3; ++i) PyBuffer_Release(&views[i]);
  if (status == -100) return NULL;
  return PyLong_FromLong(status);
}

static PyMethodDef methods[] = {
    {"maskwise_pixels", maskwise_pixels, METH_VARARGS,
     "Fused pixel pass of the mask-wise merge (see the module source)."},
    {"lookup", lookup, METH_VARARGS, "out = table[index (mod modulus)] (+ index), int32."},
    {"id_extents", id_extents, METH_VARARGS, "Count and extent of every id of an id map."},
    {"instance_pairs", instance_pairs, METH_VARARGS, "Joint histogram of two frames' ids."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_kernels", "Native kernels of post-processing.", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_kernels(void) { return PyModule_Create(&module); }
