// Training a OneBit layer in research code (docs/algorithms.md §1): the layer's gradients, a
// layer type with latent float weights, and Adam over such a layer (optim.hpp has Adam).
//
// The layer is y = ((x ⊙ g) · Sᵀ) ⊙ h with S = sign(W) (sign(0) = +1). For a batch X
// (batch x in) and the loss gradient dY = ∂L/∂Y (batch x out), with A = X ⊙ g (each row times
// g) and Z = A · Sᵀ (so Y = Z ⊙ h):
//
//   ∂L/∂h_j = Σ_b dY_bj Z_bj              dZ = dY ⊙ h
//   ∂L/∂A   = dZ · S                      ∂L/∂X = ∂L/∂A ⊙ g
//   ∂L/∂g_i = Σ_b (∂L/∂A)_bi X_bi
//   ∂L/∂S   = dZᵀ · A                     (out x in: the gradient with respect to the signs)
//   ∂L/∂W   = ∂L/∂S ⊙ (1.001 − tanh(W)²)  (the straight-through estimator of OneBit's code)
//
// With OneBit's post-LayerNorm on (linear.hpp's post_norm), the layer is Y = LN(P), P = Z ⊙ h,
// per batch row over the out features: Y_j = (P_j − μ)/s, s = sqrt(σ² + eps), σ² biased. Its
// backward, per row, with n = out:
//
//   ∂L/∂P = (dY − mean(dY) − Y ⊙ mean(dY ⊙ Y)) / s
//
// and everything above follows with ∂L/∂P in place of dY.
//
// The estimator is the exact derivative of the surrogate s(w) = tanh(w) + 0.001·w taken at the
// signs: for a loss linear in Y (any fixed dY), ∂L/∂W is exactly the gradient of the layer
// with s(W) in place of sign(W), which is what the tests hold it to with finite differences.
//
// Everything is in T = float or double, row-major, through Eigen (its GEMM does the three
// products); raw-pointer overloads take leading dimensions like gemm. Bad shapes, null
// buffers and short leading dimensions throw std::invalid_argument naming the shapes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "../half.hpp"
#include "../linear.hpp"
#include "../sign_matrix.hpp"
#include "optim.hpp"

namespace onebit {

// OneBit's straight-through estimate of d sign(w) / dw.
template <class T>
T sign_ste(T w) noexcept {
  const T t = std::tanh(w);
  return T(1.001) - t * t;
}

// The gradients of one layer's parameters for a batch.
template <class T = float>
struct linear_gradients {
  using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  matrix W;  // out x in: ∂L/∂W through the STE for a latent layer, ∂L/∂S for a signs-only one
  vector g;  // in
  vector h;  // out
};

namespace detail {

template <class T>
using grad_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using grad_map = Eigen::Map<const grad_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using grad_map_out = Eigen::Map<grad_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

inline void check_batch(const char* function, std::size_t out, std::size_t in, const void* x,
                        std::size_t batch, std::size_t ldx, const void* y, std::size_t ldy,
                        const char* y_name) {
  const std::string where = std::string("onebit::") + function + ": for a " +
                            shape_string(out, in) + " (out x in) layer and batch " +
                            std::to_string(batch) + ", ";
  if (out == 0 || in == 0) throw std::invalid_argument(where + "the layer is empty");
  if (batch == 0) return;
  if (x == nullptr) throw std::invalid_argument(where + "x is null");
  if (y == nullptr) throw std::invalid_argument(where + y_name + " is null");
  if (ldx < in)
    throw std::invalid_argument(where + "ldx " + std::to_string(ldx) + " < in " +
                                std::to_string(in));
  if (ldy < out)
    throw std::invalid_argument(where + "ld" + y_name + " " + std::to_string(ldy) + " < out " +
                                std::to_string(out));
}

// The shared backward: S (±1 as T), g, h; fills grads and, when dx is given, ∂L/∂X.
template <class T>
void onebit_backward(const grad_matrix<T>& S, const Eigen::Matrix<T, Eigen::Dynamic, 1>& g,
                     const Eigen::Matrix<T, Eigen::Dynamic, 1>& h, const T* x,
                     std::size_t batch, std::size_t ldx, const T* dy, std::size_t lddy, T* dx,
                     std::size_t lddx, linear_gradients<T>& grads) {
  const Eigen::Index out = S.rows(), in = S.cols(), B = static_cast<Eigen::Index>(batch);
  grads.h.setZero(out);
  grads.g.setZero(in);
  grads.W.setZero(out, in);
  if (batch == 0) return;
  const grad_map<T> X(x, B, in, Eigen::OuterStride<>(static_cast<Eigen::Index>(ldx)));
  const grad_map<T> dY(dy, B, out, Eigen::OuterStride<>(static_cast<Eigen::Index>(lddy)));
  const grad_matrix<T> A = X * g.asDiagonal();
  const grad_matrix<T> Z = A * S.transpose();
  grads.h = (dY.array() * Z.array()).colwise().sum().transpose();
  const grad_matrix<T> dZ = dY * h.asDiagonal();
  const grad_matrix<T> dA = dZ * S;
  grads.g = (dA.array() * X.array()).colwise().sum().transpose();
  grads.W.noalias() = dZ.transpose() * A;
  if (dx != nullptr) {
    grad_map_out<T> dX(dx, B, in, Eigen::OuterStride<>(static_cast<Eigen::Index>(lddx)));
    dX = dA * g.asDiagonal();
  }
}

// Applies the post-norm to the rows of P (batch x out) in place; returns s per row.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, 1> layer_norm_rows(grad_matrix<T>& P, const post_norm& norm) {
  Eigen::Matrix<T, Eigen::Dynamic, 1> s(P.rows());
  const T n = static_cast<T>(P.cols());
  for (Eigen::Index b = 0; b < P.rows(); ++b) {
    const T mean = P.row(b).sum() / n;
    P.row(b).array() -= mean;
    const T variance = P.row(b).squaredNorm() / n;
    s(b) = std::sqrt(variance + static_cast<T>(norm.eps));
    P.row(b) /= s(b);
  }
  return s;
}

// ∂L/∂P from ∂L/∂Y for Y = LN(P): Y the normalised rows, s their scales (layer_norm_rows).
template <class T>
grad_matrix<T> layer_norm_backward(const grad_matrix<T>& Y,
                                   const Eigen::Matrix<T, Eigen::Dynamic, 1>& s,
                                   const grad_map<T>& dY) {
  grad_matrix<T> dP(Y.rows(), Y.cols());
  const T n = static_cast<T>(Y.cols());
  for (Eigen::Index b = 0; b < Y.rows(); ++b) {
    const T mean_dy = dY.row(b).sum() / n;
    const T mean_dy_y = dY.row(b).dot(Y.row(b)) / n;
    dP.row(b) = (dY.row(b).array() - mean_dy - Y.row(b).array() * mean_dy_y) / s(b);
  }
  return dP;
}

// The backward of a layer with its post-norm: P recomputed from X, ∂L/∂P through the norm,
// then onebit_backward. Without the norm, onebit_backward itself.
template <class T>
void normed_backward(const grad_matrix<T>& S, const Eigen::Matrix<T, Eigen::Dynamic, 1>& g,
                     const Eigen::Matrix<T, Eigen::Dynamic, 1>& h, const post_norm& norm,
                     const T* x, std::size_t batch, std::size_t ldx, const T* dy,
                     std::size_t lddy, T* dx, std::size_t lddx, linear_gradients<T>& grads) {
  if (!norm.enabled || batch == 0) {
    onebit_backward<T>(S, g, h, x, batch, ldx, dy, lddy, dx, lddx, grads);
    return;
  }
  const Eigen::Index B = static_cast<Eigen::Index>(batch);
  const grad_map<T> X(x, B, S.cols(), Eigen::OuterStride<>(static_cast<Eigen::Index>(ldx)));
  const grad_map<T> dY(dy, B, S.rows(), Eigen::OuterStride<>(static_cast<Eigen::Index>(lddy)));
  grad_matrix<T> Y = ((X * g.asDiagonal()) * S.transpose()) * h.asDiagonal();
  const Eigen::Matrix<T, Eigen::Dynamic, 1> s = layer_norm_rows(Y, norm);
  const grad_matrix<T> dP = layer_norm_backward(Y, s, dY);
  onebit_backward<T>(S, g, h, x, batch, ldx, dP.data(), static_cast<std::size_t>(dP.cols()), dx,
                     lddx, grads);
}

}  // namespace detail

// A OneBit layer for training: latent float weights W (forward uses sign(W)), and g, h in
// float. Initialise it from a OneBit layer (SVID's, say) with from_linear; export it with
// to_linear.
template <class T = float>
class latent_linear {
  static_assert(std::is_floating_point_v<T>, "latent_linear<T>: T is float or double");

 public:
  using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

  matrix W;  // out x in, latent
  vector g;  // in
  vector h;  // out
  post_norm norm{};  // OneBit's post-LayerNorm, when enabled: Y = LN(((X ⊙ g) · Sᵀ) ⊙ h)

  latent_linear() = default;
  latent_linear(matrix w, vector g_values, vector h_values)
      : W(std::move(w)), g(std::move(g_values)), h(std::move(h_values)) {
    check("latent_linear");
  }

  // From a OneBit layer: W = sign · latent_scale (0.01: OneBit's start from SVID, §1), g and
  // h converted exactly from FP16.
  template <class Word>
  static latent_linear from_linear(const linear<Word>& layer, T latent_scale = T(0.01)) {
    const linear_view<Word> v = layer.view();  // checks g and h
    const std::size_t out = v.out_features(), in = v.in_features();
    latent_linear l;
    l.W.resize(static_cast<Eigen::Index>(out), static_cast<Eigen::Index>(in));
    for (std::size_t j = 0; j < out; ++j)
      for (std::size_t i = 0; i < in; ++i)
        l.W(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) =
            latent_scale * static_cast<T>(v.W(j, i));
    l.g.resize(static_cast<Eigen::Index>(in));
    l.h.resize(static_cast<Eigen::Index>(out));
    for (std::size_t i = 0; i < in; ++i) l.g(static_cast<Eigen::Index>(i)) = to_float(v.g[i]);
    for (std::size_t j = 0; j < out; ++j) l.h(static_cast<Eigen::Index>(j)) = to_float(v.h[j]);
    l.norm = layer.norm;
    return l;
  }

  std::size_t in_features() const noexcept { return static_cast<std::size_t>(W.cols()); }
  std::size_t out_features() const noexcept { return static_cast<std::size_t>(W.rows()); }

  // S = sign(W) as ±1 (sign(0) = +1).
  matrix signs() const {
    return W.unaryExpr([](T w) { return w < T(0) ? T(-1) : T(1); });
  }

  // Y[b*ldy + j] = h_j Σ_i X[b*ldx + i] g_i sign(W_ji), then each row normalised when the
  // norm is on.
  void forward(const T* x, std::size_t batch, std::size_t ldx, T* y, std::size_t ldy) const {
    check("latent_linear::forward");
    detail::check_batch("latent_linear::forward", out_features(), in_features(), x, batch, ldx,
                        y, ldy, "y");
    if (batch == 0) return;
    const Eigen::Index B = static_cast<Eigen::Index>(batch);
    const detail::grad_map<T> X(x, B, W.cols(), Eigen::OuterStride<>(static_cast<Eigen::Index>(ldx)));
    detail::grad_map_out<T> Y(y, B, W.rows(), Eigen::OuterStride<>(static_cast<Eigen::Index>(ldy)));
    if (!norm.enabled) {
      Y.noalias() = ((X * g.asDiagonal()) * signs().transpose()) * h.asDiagonal();
      return;
    }
    matrix P = ((X * g.asDiagonal()) * signs().transpose()) * h.asDiagonal();
    detail::layer_norm_rows(P, norm);
    Y = P;
  }
  matrix forward(const Eigen::Ref<const matrix>& x) const {
    matrix y(x.rows(), W.rows());
    if (x.cols() != W.cols())
      throw std::invalid_argument("onebit::latent_linear::forward: x has " +
                                  std::to_string(x.cols()) + " columns for a " +
                                  detail::shape_string(out_features(), in_features()) +
                                  " (out x in) layer");
    forward(x.data(), static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.outerStride()),
            y.data(), static_cast<std::size_t>(y.cols()));
    return y;
  }

  // Gradients for the batch X with ∂L/∂Y = dy: W through the STE, g, h; and ∂L/∂X into dx
  // when dx is not null (batch x in, leading dimension lddx).
  linear_gradients<T> backward(const T* x, std::size_t batch, std::size_t ldx, const T* dy,
                               std::size_t lddy, T* dx = nullptr, std::size_t lddx = 0) const {
    check("latent_linear::backward");
    detail::check_batch("latent_linear::backward", out_features(), in_features(), x, batch, ldx,
                        dy, lddy, "dy");
    if (dx != nullptr && batch != 0 && lddx < in_features())
      throw std::invalid_argument("onebit::latent_linear::backward: lddx " + std::to_string(lddx) +
                                  " < in " + std::to_string(in_features()));
    linear_gradients<T> grads;
    detail::normed_backward<T>(signs(), g, h, norm, x, batch, ldx, dy, lddy, dx, lddx, grads);
    grads.W.array() *= W.unaryExpr([](T w) { return sign_ste(w); }).array();
    return grads;
  }
  linear_gradients<T> backward(const Eigen::Ref<const matrix>& x, const Eigen::Ref<const matrix>& dy,
                               matrix* dx = nullptr) const {
    if (x.rows() != dy.rows() || x.cols() != W.cols() || dy.cols() != W.rows())
      throw std::invalid_argument("onebit::latent_linear::backward: x is " +
                                  detail::shape_string(static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols())) +
                                  " and dy " +
                                  detail::shape_string(static_cast<std::size_t>(dy.rows()), static_cast<std::size_t>(dy.cols())) +
                                  " for a " + detail::shape_string(out_features(), in_features()) +
                                  " (out x in) layer");
    if (dx != nullptr) dx->resize(x.rows(), x.cols());
    return backward(x.data(), static_cast<std::size_t>(x.rows()),
                    static_cast<std::size_t>(x.outerStride()), dy.data(),
                    static_cast<std::size_t>(dy.outerStride()), dx ? dx->data() : nullptr,
                    static_cast<std::size_t>(x.cols()));
  }

  // The deployable OneBit layer: sign(W) packed, g and h rounded to FP16 (nearest even).
  template <class Word = std::uint64_t>
  linear<Word> to_linear() const {
    check("latent_linear::to_linear");
    const std::size_t out = out_features(), in = in_features();
    sign_matrix<Word> S(out, in);
    for (std::size_t j = 0; j < out; ++j)
      for (std::size_t i = 0; i < in; ++i) {
        const T w = W(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i));
        if (std::isnan(w))
          throw std::invalid_argument("onebit::latent_linear::to_linear: W(" + std::to_string(j) +
                                      ", " + std::to_string(i) + ") is NaN");
        if (w < T(0)) S.set(j, i, -1);
      }
    std::vector<half> gh(in), hh(out);
    for (std::size_t i = 0; i < in; ++i)
      gh[i] = to_half(static_cast<float>(g(static_cast<Eigen::Index>(i))));
    for (std::size_t j = 0; j < out; ++j)
      hh[j] = to_half(static_cast<float>(h(static_cast<Eigen::Index>(j))));
    return linear<Word>{std::move(S), std::move(gh), std::move(hh), norm};
  }

 private:
  void check(const char* function) const {
    if (W.rows() == 0 || W.cols() == 0)
      throw std::invalid_argument(std::string("onebit::") + function + ": W is empty (" +
                                  detail::shape_string(out_features(), in_features()) + ")");
    if (g.size() != W.cols() || h.size() != W.rows())
      throw std::invalid_argument(std::string("onebit::") + function + ": g has " +
                                  std::to_string(g.size()) + " and h " +
                                  std::to_string(h.size()) + " values for a " +
                                  detail::shape_string(out_features(), in_features()) +
                                  " (out x in) layer");
  }
};

// Gradients of a deployed OneBit layer (signs fixed, no latent weights): ∂L/∂g, ∂L/∂h, ∂L/∂S
// (in grads.W: the gradient with respect to the sign values), and ∂L/∂X into dx when given;
// through the layer's post-norm when it has one.
template <class Word>
linear_gradients<float> backward(const linear<Word>& layer, const float* x, std::size_t batch,
                                 std::size_t ldx, const float* dy, std::size_t lddy,
                                 float* dx = nullptr, std::size_t lddx = 0) {
  const linear_view<Word> v = layer.view();
  const std::size_t out = v.out_features(), in = v.in_features();
  detail::check_batch("backward", out, in, x, batch, ldx, dy, lddy, "dy");
  if (dx != nullptr && batch != 0 && lddx < in)
    throw std::invalid_argument("onebit::backward: lddx " + std::to_string(lddx) + " < in " +
                                std::to_string(in));
  detail::grad_matrix<float> S(static_cast<Eigen::Index>(out), static_cast<Eigen::Index>(in));
  for (std::size_t j = 0; j < out; ++j)
    for (std::size_t i = 0; i < in; ++i)
      S(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) = static_cast<float>(v.W(j, i));
  Eigen::VectorXf g(static_cast<Eigen::Index>(in)), h(static_cast<Eigen::Index>(out));
  for (std::size_t i = 0; i < in; ++i) g(static_cast<Eigen::Index>(i)) = to_float(v.g[i]);
  for (std::size_t j = 0; j < out; ++j) h(static_cast<Eigen::Index>(j)) = to_float(v.h[j]);
  linear_gradients<float> grads;
  detail::normed_backward<float>(S, g, h, v.norm, x, batch, ldx, dy, lddy, dx, lddx, grads);
  return grads;
}

// Mean squared error over a batch x n block, L = Σ (y − t)² / (batch·n), and its gradient
// 2 (y − t) / (batch·n) written to dy (same leading dimension as y) when dy is not null.
template <class T>
double mean_squared_error(const T* y, std::size_t ldy, const T* target, std::size_t ldt,
                          std::size_t batch, std::size_t n, T* dy = nullptr) {
  if (batch == 0 || n == 0) return 0.0;
  if (y == nullptr || target == nullptr)
    throw std::invalid_argument("onebit::mean_squared_error: null y or target");
  if (ldy < n || ldt < n)
    throw std::invalid_argument("onebit::mean_squared_error: leading dimension below n " +
                                std::to_string(n));
  const double scale = 1.0 / (static_cast<double>(batch) * static_cast<double>(n));
  double total = 0;
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(y[b * ldy + i]) - static_cast<double>(target[b * ldt + i]);
      total += d * d;
      if (dy != nullptr) dy[b * ldy + i] = static_cast<T>(2.0 * d * scale);
    }
  return total * scale;
}

// Adam over a latent_linear's W, g and h (each may be frozen).
template <class T = float>
class latent_linear_adam {
 public:
  bool train_W = true, train_g = true, train_h = true;

  explicit latent_linear_adam(const latent_linear<T>& layer)
      : W_(static_cast<std::size_t>(layer.W.size())), g_(static_cast<std::size_t>(layer.g.size())),
        h_(static_cast<std::size_t>(layer.h.size())) {}

  void step(latent_linear<T>& layer, const linear_gradients<T>& grads, const adam_options& o) {
    if (grads.W.rows() != layer.W.rows() || grads.W.cols() != layer.W.cols() ||
        grads.g.size() != layer.g.size() || grads.h.size() != layer.h.size() ||
        static_cast<std::size_t>(layer.W.size()) != W_.size())
      throw std::invalid_argument("onebit::latent_linear_adam::step: gradients of another shape");
    if (train_W) W_.step(layer.W.data(), grads.W.data(), o);
    if (train_g) g_.step(layer.g.data(), grads.g.data(), o);
    if (train_h) h_.step(layer.h.data(), grads.h.data(), o);
    ++steps_;
  }
  std::size_t steps() const noexcept { return steps_; }

 private:
  adam_state<T> W_, g_, h_;
  std::size_t steps_ = 0;
};

}  // namespace onebit
