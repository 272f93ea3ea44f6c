// Fused scaling-domain Sinkhorn for CPU tensors (hcm.model.ot.fused_cpu builds and loads this file).
//
// The same iterations as ScalingSinkhorn in dense.py, one sample per call of forward_one /
// backward_one, the batch shared out among OpenMP threads one sample at a time (a thread that
// the OS delays on a busy machine then takes fewer samples instead of holding up the call).
// Each sample's kernel (M, N) stays in cache for all of its iterations, so the cost is the
// arithmetic, not one library call per mat-vec.
// Arrays are C-contiguous: kern, plan, grad_plan, g_logk (B, M, N); a, g_a (B, M); b, g_b (B, N);
// alphas (B, n_iters + 1, M); betas (B, n_iters, N); den_us (B, n_iters, M); den_vs (B, n_iters, N).
// No fast-math: zero masses must give exact zeros, and a failed sample must give inf/NaN so that
// the caller can see it and rerun the log-domain path.

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

// Four rows at a time: four independent sums (or four rows per pass over `out`) keep the vector
// units busy; on (50, 50) kernels the latency of one long chain would dominate.
template <typename T>
void matvec(const T* kern, const T* x, T* out, int64_t m, int64_t n) {  // out (M) = K x
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    const T *r0 = kern + i * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t j = 0; j < n; ++j) {
      s0 += r0[j] * x[j];
      s1 += r1[j] * x[j];
      s2 += r2[j] * x[j];
      s3 += r3[j] * x[j];
    }
    out[i] = s0, out[i + 1] = s1, out[i + 2] = s2, out[i + 3] = s3;
  }
  for (; i < m; ++i) {
    const T* row = kern + i * n;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; ++j) sum += row[j] * x[j];
    out[i] = sum;
  }
}

template <typename T>
void matvec_t(const T* kern, const T* x, T* out, int64_t m, int64_t n) {  // out (N) = K^T x
  std::memset(out, 0, sizeof(T) * n);
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    const T *r0 = kern + i * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
    const T x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) out[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j];
  }
  for (; i < m; ++i) {
    const T* row = kern + i * n;
    const T xi = x[i];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) out[j] += xi * row[j];
  }
}

template <typename T>
void forward_one(const T* kern, const T* a, const T* b, T* alphas, T* betas, T* den_us, T* den_vs,
                 T* plan, int64_t m, int64_t n, int64_t iters) {
  for (int64_t i = 0; i < m; ++i) alphas[i] = a[i] > 0 ? T(1) : T(0);  // zero-mass rows stay 0
  for (int64_t it = 0; it < iters; ++it) {
    const T* alpha = alphas + it * m;
    T* beta = betas + it * n;
    T* den_v = den_vs + it * n;
    T* den_u = den_us + it * m;
    T* next = alphas + (it + 1) * m;
    matvec_t(kern, alpha, den_v, m, n);
    for (int64_t j = 0; j < n; ++j) beta[j] = b[j] / den_v[j];
    matvec(kern, beta, den_u, m, n);
    for (int64_t i = 0; i < m; ++i) next[i] = a[i] / den_u[i];
  }
  const T* alpha = alphas + iters * m;
  const T* beta = betas + (iters - 1) * n;
  for (int64_t i = 0; i < m; ++i) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) plan[i * n + j] = alpha[i] * kern[i * n + j] * beta[j];
  }
}

// d loss / d alpha_n (M) and the plan's direct term of d loss / d beta_n (N), from weighted = G * K.
template <typename T>
void plan_grads(const T* grad, const T* kern, const T* alpha, const T* beta, T* g_alpha, T* g_beta,
                int64_t m, int64_t n) {
  std::memset(g_beta, 0, sizeof(T) * n);
  for (int64_t i = 0; i < m; ++i) {
    const T* g_row = grad + i * n;
    const T* k_row = kern + i * n;
    const T ai = alpha[i];
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; ++j) {
      const T weighted = g_row[j] * k_row[j];
      sum += weighted * beta[j];
      g_beta[j] += ai * weighted;
    }
    g_alpha[i] = sum;
  }
}

// The reverse of forward_one over its last `steps` iterations; g_logk first collects the rank-1
// terms of d loss / d K, then becomes d loss / d logk = G * plan + (sum of rank-1 terms) * K.
template <typename T>
void backward_one(const T* grad, const T* kern, const T* plan, const T* alphas, const T* betas,
                  const T* den_us, const T* den_vs, T* g_logk, T* g_a, T* g_b, T* work, int64_t m,
                  int64_t n, int64_t iters, int64_t steps) {
  T* g_alpha = work;          // (M)
  T* g_den_u = g_alpha + m;   // (M)
  T* g_beta = g_den_u + m;    // (N)
  T* g_beta_plan = g_beta + n;  // (N)
  T* g_den_v = g_beta_plan + n;  // (N)
  plan_grads(grad, kern, alphas + iters * m, betas + (iters - 1) * n, g_alpha, g_beta_plan, m, n);
  std::memset(g_logk, 0, sizeof(T) * m * n);
  std::memset(g_a, 0, sizeof(T) * m);
  std::memset(g_b, 0, sizeof(T) * n);
  const int64_t stop = iters - steps > 0 ? iters - steps : 0;
  for (int64_t k = iters - 1; k >= stop; --k) {
    const T* den_u = den_us + k * m;
    const T* den_v = den_vs + k * n;
    const T* alpha = alphas + k * m;
    const T* alpha_next = alphas + (k + 1) * m;
    const T* beta = betas + k * n;
    for (int64_t i = 0; i < m; ++i) {
      g_a[i] += g_alpha[i] / den_u[i];
      g_den_u[i] = -g_alpha[i] * alpha_next[i] / den_u[i];
    }
    matvec_t(kern, g_den_u, g_beta, m, n);
    if (k == iters - 1)
      for (int64_t j = 0; j < n; ++j) g_beta[j] += g_beta_plan[j];
    for (int64_t j = 0; j < n; ++j) {
      g_b[j] += g_beta[j] / den_v[j];
      g_den_v[j] = -g_beta[j] * beta[j] / den_v[j];
    }
    for (int64_t i = 0; i < m; ++i) {  // rank-1 terms of this iteration, and g_alpha = K g_den_v
      T* acc = g_logk + i * n;
      const T* k_row = kern + i * n;
      const T du = g_den_u[i], ai = alpha[i];
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) {
        acc[j] += du * beta[j] + ai * g_den_v[j];
        sum += k_row[j] * g_den_v[j];
      }
      g_alpha[i] = sum;
    }
  }
#pragma omp simd
  for (int64_t e = 0; e < m * n; ++e) g_logk[e] = grad[e] * plan[e] + g_logk[e] * kern[e];
}

template <typename T>
int forward(int64_t batch, int64_t m, int64_t n, int64_t iters, const T* kern, const T* a, const T* b,
            T* alphas, T* betas, T* den_us, T* den_vs, T* plan, int threads) {
#pragma omp parallel for schedule(dynamic) num_threads(threads > 0 ? threads : 1)
  for (int64_t s = 0; s < batch; ++s) {
    forward_one(kern + s * m * n, a + s * m, b + s * n, alphas + s * (iters + 1) * m,
                betas + s * iters * n, den_us + s * iters * m, den_vs + s * iters * n, plan + s * m * n, m,
                n, iters);
  }
  return 0;
}

template <typename T>
int backward(int64_t batch, int64_t m, int64_t n, int64_t iters, int64_t steps, const T* grad,
             const T* kern, const T* plan, const T* alphas, const T* betas, const T* den_us,
             const T* den_vs, T* g_logk, T* g_a, T* g_b, int threads) {
  int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1) reduction(| : failed)
  {
    T* work = static_cast<T*>(std::malloc(sizeof(T) * (2 * m + 3 * n)));
    if (work == nullptr) {
      failed = 1;
    }
#pragma omp for schedule(dynamic)
    for (int64_t s = 0; s < batch; ++s) {
      if (work == nullptr) continue;
      backward_one(grad + s * m * n, kern + s * m * n, plan + s * m * n, alphas + s * (iters + 1) * m,
                   betas + s * iters * n, den_us + s * iters * m, den_vs + s * iters * n,
                   g_logk + s * m * n, g_a + s * m, g_b + s * n, work, m, n, iters, steps);
    }
    std::free(work);
  }
  return failed;
}

}  // namespace

extern "C" {

int hcm_sinkhorn_forward_f32(int64_t batch, int64_t m, int64_t n, int64_t iters, const float* kern,
                             const float* a, const float* b, float* alphas, float* betas, float* den_us,
                             float* den_vs, float* plan, int threads) {
  return forward(batch, m, n, iters, kern, a, b, alphas, betas, den_us, den_vs, plan, threads);
}

int hcm_sinkhorn_forward_f64(int64_t batch, int64_t m, int64_t n, int64_t iters, const double* kern,
                             const double* a, const double* b, double* alphas, double* betas,
                             double* den_us, double* den_vs, double* plan, int threads) {
  return forward(batch, m, n, iters, kern, a, b, alphas, betas, den_us, den_vs, plan, threads);
}

int hcm_sinkhorn_backward_f32(int64_t batch, int64_t m, int64_t n, int64_t iters, int64_t steps,
                              const float* grad, const float* kern, const float* plan, const float* alphas,
                              const float* betas, const float* den_us, const float* den_vs, float* g_logk,
                              float* g_a, float* g_b, int threads) {
  return backward(batch, m, n, iters, steps, grad, kern, plan, alphas, betas, den_us, den_vs, g_logk, g_a,
                  g_b, threads);
}

int hcm_sinkhorn_backward_f64(int64_t batch, int64_t m, int64_t n, int64_t iters, int64_t steps,
                              const double* grad, const double* kern, const double* plan,
                              const double* alphas, const double* betas, const double* den_us,
                              const double* den_vs, double* g_logk, double* g_a, double* g_b,
                              int threads) {
  return backward(batch, m, n, iters, steps, grad, kern, plan, alphas, betas, den_us, den_vs, g_logk, g_a,
                  g_b, threads);
}

}  // extern "C"
