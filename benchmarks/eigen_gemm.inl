// Body of the Eigen baseline; included by eigen_sse2.cpp and eigen_avx2.cpp with
// EIGEN_BASELINE_NAMESPACE set. Not a header of its own.
#include <Eigen/Core>

namespace bench {
namespace EIGEN_BASELINE_NAMESPACE {

void gemm(const float* w, std::size_t out, std::size_t in, const float* x, std::size_t batch,
          float* y, std::size_t ldy) {
  using index = Eigen::Index;
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const row_major> W(w, static_cast<index>(out), static_cast<index>(in));
  if (batch == 1) {
    const Eigen::Map<const Eigen::RowVectorXf> xv(x, static_cast<index>(in));
    Eigen::Map<Eigen::RowVectorXf> yv(y, static_cast<index>(out));
    yv.noalias() = xv * W.transpose();  // GEMV: W (row-major) times a vector
    return;
  }
  const Eigen::Map<const row_major> X(x, static_cast<index>(batch), static_cast<index>(in));
  Eigen::Map<row_major, 0, Eigen::OuterStride<>> Y(y, static_cast<index>(batch),
                                                   static_cast<index>(out),
                                                   Eigen::OuterStride<>(static_cast<index>(ldy)));
  Y.noalias() = X * W.transpose();
}

const char* simd_instruction_sets() { return Eigen::SimdInstructionSetsInUse(); }

}  // namespace EIGEN_BASELINE_NAMESPACE
}  // namespace bench
