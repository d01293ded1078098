// Shared by the tests: random layers, padding garbage, and the exact (double) evaluation of
// y = ((x ⊙ g) · Wᵀ) ⊙ h that every kernel is held against.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>
#include <onebit/onebit.hpp>

namespace onebit_test {

// The instruction-set paths to run, with a visible note for each one this machine cannot.
inline std::vector<onebit::isa> runnable_paths() {
  static const std::vector<onebit::isa> paths = [] {
    std::vector<onebit::isa> run;
    for (onebit::isa path : onebit::all_isas) {
      const std::string missing = onebit::detail::missing_features(path, onebit::cpu());
      if (missing.empty())
        run.push_back(path);
      else
        MESSAGE("skipped path ", std::string(onebit::to_string(path)),
                ": this CPU or build lacks ", missing);
    }
    return run;
  }();
  return paths;
}

inline std::mt19937_64& rng() {
  static std::mt19937_64 engine(20261123);
  return engine;
}

inline std::vector<float> gaussian(std::size_t n, float sigma = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng());
  return v;
}

// g and h as a trained layer has them: positive magnitudes around 0.02 .. 2, a few negative.
inline std::vector<onebit::half> value_vector(std::size_t n) {
  std::lognormal_distribution<float> magnitude(-1.0f, 1.0f);
  std::bernoulli_distribution negative(0.05);
  std::vector<onebit::half> v(n);
  for (auto& x : v) x = onebit::to_half(negative(rng()) ? -magnitude(rng()) : magnitude(rng()));
  return v;
}

// Gaussian activations as float or as half.
template <class T>
std::vector<T> activations(std::size_t count) {
  const std::vector<float> v = gaussian(count);
  std::vector<T> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    if constexpr (std::is_same_v<T, float>)
      out[i] = v[i];
    else
      out[i] = onebit::to_half(v[i]);
  }
  return out;
}

template <class Word = std::uint64_t>
onebit::linear<Word> random_layer(std::size_t out, std::size_t in) {
  const std::vector<float> w = gaussian(out * in);
  return {onebit::sign_matrix<Word>::from_dense(w.data(), out, in, in), value_vector(in),
          value_vector(out)};
}

// Sets every padding bit and byte of W (past `cols` in each row) to random garbage.
template <class Word>
void fill_padding_with_garbage(onebit::sign_matrix<Word>& W) {
  constexpr std::size_t bits = 8 * sizeof(Word);
  std::uniform_int_distribution<std::uint64_t> any;
  for (std::size_t r = 0; r < W.rows(); ++r) {
    Word* row = W.row(r);
    const std::size_t words = W.words_per_row();
    if (W.cols() % bits != 0)
      row[words - 1] = static_cast<Word>(row[words - 1] | (static_cast<Word>(any(rng())) &
                                                           ~W.view().last_word_mask()));
    for (std::size_t w = words; w < W.stride_words(); ++w) row[w] = static_cast<Word>(any(rng()));
  }
}

inline double as_double(float v) { return v; }
inline double as_double(onebit::half v) { return onebit::to_float(v); }

// Exact y (to double rounding, ~1e-16 relative) and the scale sum_i |x_i g_i| |h_j| that
// float error bounds are relative to.
struct exact_result {
  std::vector<double> y;      // batch x out
  std::vector<double> scale;  // batch x out
};

template <class Word, class T>
exact_result exact_gemm(const onebit::linear<Word>& layer, const T* x, std::size_t batch,
                        std::size_t ldx) {
  const std::size_t in = layer.in_features(), out = layer.out_features();
  exact_result r{std::vector<double>(batch * out), std::vector<double>(batch * out)};
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t j = 0; j < out; ++j) {
      double sum = 0, mag = 0;
      for (std::size_t i = 0; i < in; ++i) {
        const double a = as_double(x[b * ldx + i]) * onebit::to_float(layer.g[i]);
        sum += layer.W(j, i) * a;
        mag += std::fabs(a);
      }
      const double hj = onebit::to_float(layer.h[j]);
      r.y[b * out + j] = sum * hj;
      r.scale[b * out + j] = mag * std::fabs(hj);
    }
  return r;
}

// A buffer of `count` T starting `offset_elems` past a 64-byte boundary, so tests can hand
// kernels deliberately unaligned pointers.
template <class T>
struct offset_buffer {
  std::vector<T> storage;
  std::size_t offset;
  offset_buffer(std::size_t count, std::size_t offset_elems, T fill = T{})
      : storage(count + offset_elems + 64, fill), offset(offset_elems) {}
  T* data() {
    auto p = reinterpret_cast<std::uintptr_t>(storage.data());
    const std::size_t skip = ((64 - p % 64) % 64) / sizeof(T);
    return storage.data() + skip + offset;
  }
};

}  // namespace onebit_test
