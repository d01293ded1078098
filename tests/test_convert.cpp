// The conversion behind onebit-convert (tools/convert.hpp): converted layers are exactly SVID's
// (or RTN's) in memory, everything else passes through byte for byte, bad choices are refused by
// name. (test_convert_llama.cpp runs the tiny Llama from a converted file.)
#include <onebit/models/convert.hpp>

#include <onebit/io/safetensors.hpp>
#include <onebit/quant/svid.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_convert {

namespace io = onebit::io;

namespace {

struct aligned_file {
  std::vector<std::byte> bytes;
  onebit::detail::aligned_buffer buffer;
  explicit aligned_file(std::vector<std::byte> b) : bytes(std::move(b)), buffer(bytes.size()) {
    std::memcpy(buffer.data(), bytes.data(), bytes.size());
  }
  io::safetensors_view view() const { return io::safetensors_view(buffer.data(), bytes.size(), "input"); }
};

bool same_layer(const onebit::linear<>& a, const onebit::linear<>& b) {
  return a.W == b.W && a.g == b.g && a.h == b.h;
}

}  // namespace

TEST_CASE("converted layers are SVID's, bit for bit; other tensors pass through byte for byte") {
  const std::vector<float> q = onebit_test::gaussian(7 * 100);
  const std::vector<float> up_f = onebit_test::gaussian(5 * 64, 0.1f);
  std::vector<onebit::half> up(up_f.size());
  onebit::to_half(up_f.data(), up.data(), up.size());
  std::vector<std::uint16_t> down(3 * 70);
  const std::vector<float> down_f = onebit_test::gaussian(down.size());
  for (std::size_t i = 0; i < down.size(); ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, &down_f[i], 4);
    down[i] = static_cast<std::uint16_t>(bits >> 16);  // bfloat16 by truncation
  }
  const std::vector<float> norm = onebit_test::gaussian(100);
  const std::vector<std::int8_t> ids = {1, -2, 3, -4, 5, -6};
  io::writer w;
  w.set_metadata("format", "pt");
  w.set_metadata("dim", "100");
  w.add("blk.q_proj.weight", q.data(), {7, 100});
  w.add("blk.up_proj.weight", up.data(), {5, 64});
  w.add("blk.down_proj.weight", io::dtype::BF16, {3, 70}, down.data(), down.size() * 2);
  w.add("blk.norm.weight", norm.data(), {100});
  w.add("blk.ids", io::dtype::I8, {2, 3}, ids.data(), ids.size());
  const aligned_file input(w.bytes());
  const io::safetensors_view in = input.view();

  std::vector<std::string> seen;
  onebit::models::conversion c = onebit::models::convert(
      in, {}, [&](std::size_t done, std::size_t total, const std::string& name) {
        CHECK(total == 3);
        if (done < total) seen.push_back(name);
      });
  CHECK(seen == std::vector<std::string>{"blk.q_proj.weight", "blk.up_proj.weight", "blk.down_proj.weight"});
  REQUIRE(c.layers.size() == 3);
  CHECK(c.converted_parameters == 7 * 100 + 5 * 64 + 3 * 70);
  CHECK(c.kept_parameters == 100 + 6);

  const aligned_file output(c.writer.bytes());
  io::read_options strict;
  strict.strict = true;
  const io::safetensors_view out(output.buffer.data(), output.bytes.size(), "output", strict);
  CHECK(out.names() == std::vector<std::string>{"blk.down_proj", "blk.q_proj", "blk.up_proj"});
  CHECK(out.metadata().at("format") == "onebit");
  CHECK(out.metadata().at("dim") == "100");
  CHECK(out.metadata().at("converter") == "onebit-convert (svid)");
  for (const onebit::models::layer_report& r : c.layers) {
    CAPTURE(r.tensor);
    const std::vector<float> w0 = in.floats(r.tensor);
    const onebit::svid_result<> expected = onebit::svid_with_error(w0.data(), r.out, r.in, r.in);
    CHECK(same_layer(out.load_layer(r.layer), expected.layer));
    CHECK(r.relative_error == expected.relative_error);
    CHECK(r.bits_per_parameter == expected.layer.bits_per_parameter());
    CHECK(r.relative_error > 0.3);
    CHECK(r.relative_error < 0.8);
  }
  for (const char* kept : {"blk.norm.weight", "blk.ids"}) {
    const io::tensor_view a = in.tensor(kept), b = out.tensor(kept);
    CHECK(a.type() == b.type());
    CHECK(a.shape() == b.shape());
    REQUIRE(a.bytes() == b.bytes());
    CHECK(std::memcmp(a.data, b.data, a.bytes()) == 0);
  }

  // Converting the converted file again keeps its layers and converts nothing more.
  const onebit::models::conversion again = onebit::models::convert(out, {});
  CHECK(again.layers.empty());
  const aligned_file twice(again.writer.bytes());
  const io::safetensors_view t = twice.view();
  for (const std::string& name : out.names()) CHECK(same_layer(t.load_layer(name), out.load_layer(name)));
}

TEST_CASE("include and exclude patterns choose the matrices; bad choices are refused by name") {
  const std::vector<float> a = onebit_test::gaussian(4 * 8), nan_matrix(4 * 8, std::numeric_limits<float>::quiet_NaN());
  const std::vector<std::int8_t> ints(4 * 8, 1);
  io::writer w;
  w.add("layers.0.attention.wq.weight", a.data(), {4, 8});
  w.add("layers.1.attention.wq.weight", a.data(), {4, 8});
  w.add("layers.0.feed_forward.w2.weight", a.data(), {4, 8});
  w.add("layers.0.attention_norm.weight", a.data(), {8});
  w.add("bad.nan", nan_matrix.data(), {4, 8});
  w.add("bad.ints", io::dtype::I8, {4, 8}, ints.data(), ints.size());
  const aligned_file input(w.bytes());
  const io::safetensors_view in = input.view();

  const auto names = [&](const onebit::models::convert_options& o) {
    std::vector<std::string> out;
    for (const io::tensor_info* t : onebit::models::chosen(in, o)) out.push_back(t->name);
    return out;
  };
  onebit::models::convert_options o;
  CHECK(names(o) == std::vector<std::string>{"layers.0.attention.wq.weight", "layers.1.attention.wq.weight",
                                              "layers.0.feed_forward.w2.weight"});
  o.exclude = {"layers.1.*"};
  CHECK(names(o).size() == 2);
  o.include = {"layers.0.*"};  // the 1-D norm matches but is not a matrix: it stays
  o.exclude = {"*.w2.weight"};
  CHECK(names(o) == std::vector<std::string>{"layers.0.attention.wq.weight"});
  CHECK(onebit::models::layer_name("x.weight", ".weight") == "x");
  CHECK(onebit::models::layer_name("x.bias", ".weight") == "x.bias");

  o.include = {"bad.ints"};
  o.exclude.clear();
  CHECK_THROWS_WITH_AS(onebit::models::convert(in, o),
                       doctest::Contains("tensor \"bad.ints\": dtype I8 is not a float weight"),
                       std::invalid_argument);
  o.include = {"bad.nan"};
  CHECK_THROWS_WITH_AS(onebit::models::convert(in, o), doctest::Contains("tensor \"bad.nan\": "),
                       std::invalid_argument);
  // A layer whose .W name is taken by a tensor already in the file.
  io::writer clash;
  clash.add("x.weight", a.data(), {4, 8});
  clash.add("x.W", a.data(), {4, 8});
  const aligned_file clash_file(clash.bytes());
  o.include = {"x.weight"};
  CHECK_THROWS_WITH_AS(onebit::models::convert(clash_file.view(), o), doctest::Contains("\"x.W\" is added twice"),
                       std::invalid_argument);
}

TEST_CASE("with --method=rtn the converted matrices are rtn's, bit for bit, and run") {
  const std::vector<float> w0 = onebit_test::gaussian(6 * 50);
  io::writer w;
  w.add("m.q_proj.weight", w0.data(), {6, 50});
  const aligned_file input(w.bytes());
  onebit::models::convert_options o;
  o.how = onebit::models::method::rtn;
  o.rtn.bits = 3;
  o.rtn.group = 16;
  const onebit::models::conversion c = onebit::models::convert(input.view(), o);
  REQUIRE(c.layers.size() == 1);
  CHECK(c.layers[0].kind == "rtn w3 g16");
  const onebit::lowbit_matrix expected = onebit::rtn(w0.data(), 6, 50, 50, o.rtn);
  CHECK(c.layers[0].bits_per_parameter == doctest::Approx(static_cast<double>(expected.storage_bits()) / 300));
  double diff = 0, norm = 0;
  for (std::size_t r = 0; r < 6; ++r)
    for (std::size_t k = 0; k < 50; ++k) {
      const double d = w0[r * 50 + k] - static_cast<double>(expected.dequantized(r, k));
      diff += d * d;
      norm += static_cast<double>(w0[r * 50 + k]) * w0[r * 50 + k];
    }
  CHECK(c.layers[0].relative_error == doctest::Approx(std::sqrt(diff / norm)).epsilon(1e-12));
  const aligned_file output(c.writer.bytes());
  const io::safetensors_view out = output.view();
  CHECK(out.names().empty());
  REQUIRE(out.lowbit_names() == std::vector<std::string>{"m.q_proj"});
  const onebit::lowbit_matrix m = out.load_lowbit("m.q_proj");
  CHECK(m.scales() == expected.scales());
  CHECK(m.zeros() == expected.zeros());
  bool same_codes = true;
  for (std::size_t r = 0; r < 6; ++r)
    for (std::size_t k = 0; k < 50; ++k) same_codes = same_codes && m.code(r, k) == expected.code(r, k);
  CHECK(same_codes);
}

}  // namespace test_convert
