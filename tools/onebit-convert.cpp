// onebit-convert: a float model's safetensors file in, its linear layers as OneBit layers out.
// See usage() below, or run `onebit-convert --help`.
#include <onebit/io/onebit_checkpoint.hpp>
#include <onebit/models/convert.hpp>
#include <onebit/models/convert_gguf.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef ONEBIT_VERSION
#define ONEBIT_VERSION "unknown"
#endif

namespace {

constexpr int exit_ok = 0, exit_failure = 1, exit_usage = 2;

void usage(std::FILE* out) {
  std::fprintf(out, "%s",
R"(Usage: onebit-convert [OPTION]... INPUT OUTPUT
  or:  onebit-convert --dry-run [OPTION]... INPUT

Convert the linear layers of a float model, stored as safetensors or GGUF (F32, F16 or BF16), to OneBit
layers (SVID: one bit per weight plus FP16 value vectors g and h) or to k-bit matrices (RTN),
and write them with every other tensor unchanged to OUTPUT, a onebit safetensors file
(docs/design.md, "On-disk format") that onebit::io::mapped_file serves zero-copy. A layer from
tensor NAME.weight is written as NAME.W, NAME.g and NAME.h (RTN: NAME.planes, NAME.scales,
NAME.zeros). OUTPUT is written to a temporary file and renamed: it is never left half written.
A GGUF INPUT (recognised by its magic) is read as well: llama.cpp's layer names are included
by default, Q1_0 matrices become group-scaled 1-bit layers kept exactly (NAME.signs,
NAME.scales), and the other tensors are passed through (Q8_0 and Q4_0 dequantised to F32).

Options:
  -i, --include=PATTERN  convert the 2-D tensors whose names match PATTERN, a shell glob
                         (* matches dots too); may be repeated. Default: the linear layers of
                         Llama-family models:
                           *_proj.weight  *.attention.w[qkvo].weight  *.feed_forward.w[123].weight
  -x, --exclude=PATTERN  leave the tensors matching PATTERN as they are; may be repeated
  -m, --method=METHOD    how to convert: svid (default: OneBit layers, 1 bit per weight) or
                         rtn (round to nearest, --bits per weight)
      --rank1=svd|nmf    SVID's rank-1 factor of |W|: power iteration (svd, default) or NMF
      --iterations=N     at most N rank-1 iterations (default 100)
  -b, --bits=K           RTN: bits per weight, 1..8 (default 4; 2..8 with --symmetric)
  -g, --group=G          RTN: one scale and zero per G inputs (default 0: one per row)
      --symmetric        RTN: symmetric codes, no zero points
      --suffix=SUFFIX    the suffix dropped from a tensor's name to name its layer
                         (default .weight)
      --from-onebit-checkpoint
                         INPUT is an inference checkpoint of OneBit's own code (its 1-bit
                         modules NAME.weight I8 [out, in/8], NAME.input_factor, NAME.weight_scale);
                         write each module as the onebit layer NAME with OneBit's post-LayerNorm,
                         every other tensor unchanged (no quantisation options apply)
      --to-onebit-checkpoint
                         the reverse: INPUT is a onebit file; write its OneBit layers (each with
                         the post-LayerNorm, eps 1e-5, and in a multiple of 8) in OneBit's
                         checkpoint layout, every other tensor unchanged, so OneBit's PyTorch
                         code loads them
  -n, --dry-run          list the tensors INPUT would have converted; write nothing
  -p, --progress         always show the progress bar on standard error
  -q, --quiet            no progress bar and no summary
  -h, --help             print this help and exit
  -V, --version          print the version and exit

The progress bar is shown when standard error is a terminal. The summary, on standard output,
gives for each converted layer its shape, bits per parameter (OneBit: out*in + 16*(in + out)
bits over out*in + in + out parameters; RTN: k bits a weight plus 32-bit scales and zeros; in
parentheses what its 64-byte-aligned rows take in the file) and the relative error
|W - W'|_F / |W|_F of the stored layer W'; then the totals and the file sizes.

Exit status: 0 if OUTPUT was written (or, with --dry-run, the selection is valid), 1 if the
input could not be read or converted or the output not written, 2 for a usage error.

Example:
  onebit-convert stories260K.safetensors stories260K.onebit.safetensors
  onebit-convert -i 'model.layers.*.mlp.*' -x '*.layers.0.*' in.safetensors out.safetensors
  onebit-convert --method=rtn --bits=2 --group=32 in.safetensors out.safetensors
)");
}

struct arguments {
  onebit::models::convert_options options;
  std::vector<std::string> files;
  bool dry_run = false, quiet = false, progress = false;
  bool include_given = false, rtn_given = false;
  bool from_checkpoint = false, to_checkpoint = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "onebit-convert: %s\nTry 'onebit-convert --help' for more information.\n",
               message.c_str());
  std::exit(exit_usage);
}

long number(const std::string& option, const std::string& v, long low, long high) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || n < low || n > high)
    usage_error("--" + option + " needs a whole number from " + std::to_string(low) + " to " +
                std::to_string(high) + ", not '" + v + "'");
  return n;
}

// Parses GNU-style options: -x VALUE, -xVALUE, --long VALUE, --long=VALUE, -- ends options.
arguments parse(int argc, char** argv) {
  arguments a;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      a.files.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string name, value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0) {
      const std::size_t eq = arg.find('=');
      name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        has_value = true;
      }
    } else {
      static const std::pair<char, const char*> shorts[] = {
          {'i', "include"}, {'x', "exclude"}, {'m', "method"}, {'b', "bits"}, {'g', "group"},
          {'n', "dry-run"},
          {'p', "progress"}, {'q', "quiet"}, {'h', "help"}, {'V', "version"}};
      const auto* it = std::find_if(std::begin(shorts), std::end(shorts),
                                    [&](const auto& s) { return s.first == arg[1]; });
      if (it == std::end(shorts)) usage_error("unknown option '" + arg.substr(0, 2) + "'");
      name = it->second;
      if (arg.size() > 2) {
        value = arg.substr(2);
        has_value = true;
      }
    }
    const auto flag = [&] {
      if (has_value) usage_error("option '--" + name + "' takes no value");
    };
    const auto take = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) usage_error("option '--" + name + "' needs a value");
      return argv[++i];
    };
    if (name == "help") {
      flag();
      usage(stdout);
      std::exit(exit_ok);
    } else if (name == "version") {
      flag();
      std::printf("onebit-convert (onebit) %s\n", ONEBIT_VERSION);
      std::exit(exit_ok);
    } else if (name == "include") {
      if (!a.include_given) a.options.include.clear();
      a.include_given = true;
      a.options.include.push_back(take());
    } else if (name == "exclude") {
      a.options.exclude.push_back(take());
    } else if (name == "method") {
      const std::string m = take();
      if (m == "svid")
        a.options.how = onebit::models::method::svid;
      else if (m == "rtn")
        a.options.how = onebit::models::method::rtn;
      else
        usage_error("unknown method '" + m + "' (known: svid, rtn)");
    } else if (name == "rank1") {
      const std::string m = take();
      if (m == "svd")
        a.options.svid.method = onebit::rank1_method::svd;
      else if (m == "nmf")
        a.options.svid.method = onebit::rank1_method::nmf;
      else
        usage_error("unknown rank-1 method '" + m + "' (known: svd, nmf)");
    } else if (name == "iterations") {
      a.options.svid.max_iterations = static_cast<int>(number(name, take(), 1, 1000000));
    } else if (name == "bits") {
      a.options.rtn.bits = static_cast<int>(number(name, take(), 1, 8));
      a.rtn_given = true;
    } else if (name == "group") {
      a.options.rtn.group = static_cast<std::size_t>(number(name, take(), 0, 1L << 30));
      a.rtn_given = true;
    } else if (name == "symmetric") {
      flag();
      a.options.rtn.symmetric = true;
      a.rtn_given = true;
    } else if (name == "suffix") {
      a.options.strip_suffix = take();
    } else if (name == "from-onebit-checkpoint") {
      flag();
      a.from_checkpoint = true;
    } else if (name == "to-onebit-checkpoint") {
      flag();
      a.to_checkpoint = true;
    } else if (name == "dry-run") {
      flag();
      a.dry_run = true;
    } else if (name == "progress") {
      flag();
      a.progress = true;
    } else if (name == "quiet") {
      flag();
      a.quiet = true;
    } else {
      usage_error("unknown option '--" + name + "'");
    }
  }
  if (a.rtn_given && a.options.how != onebit::models::method::rtn)
    usage_error("--bits, --group and --symmetric go with --method=rtn");
  if (a.options.rtn.symmetric && a.options.rtn.bits < 2)
    usage_error("--symmetric needs --bits of 2 or more");
  if (a.from_checkpoint && a.to_checkpoint)
    usage_error("--from-onebit-checkpoint and --to-onebit-checkpoint go one at a time");
  if ((a.from_checkpoint || a.to_checkpoint) &&
      (a.include_given || a.rtn_given || !a.options.exclude.empty() ||
       a.options.how != onebit::models::method::svid))
    usage_error("--from/--to-onebit-checkpoint convert layouts; they take no quantisation or "
                "selection options");
  const std::size_t want = a.dry_run ? 1 : 2;
  if (a.files.size() < want)
    usage_error(a.dry_run ? "needs an INPUT file" : "needs INPUT and OUTPUT files");
  if (a.files.size() > want)
    usage_error("too many files ('" + a.files[want] + "' and after)");
  return a;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buffer;
}

// A one-line bar on stderr, redrawn in place.
void draw_progress(std::size_t done, std::size_t total, const std::string& name) {
  constexpr int width = 30;
  const int filled = total == 0 ? width : static_cast<int>(width * done / total);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  std::string label = name.size() > 48 ? "..." + name.substr(name.size() - 45) : name;
  std::fprintf(stderr, "\r[%s] %zu/%zu %-48s", bar.c_str(), done, total, label.c_str());
  if (done == total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

// The per-layer table and totals, after OUTPUT was written.
void summary(const onebit::models::conversion& c, const std::string& input_path,
             const std::string& output_path) {
  std::ifstream in_file(input_path, std::ios::binary | std::ios::ate);
  const auto in_size = static_cast<double>(in_file.tellg());
  std::printf("%-40s %-12s %11s %16s %10s\n", "layer", "as", "out x in", "bits/param",
              "rel. error");
  double error_sum = 0, paper_bits = 0;
  std::uint64_t parameters = 0;
  for (const onebit::models::layer_report& r : c.layers) {
    const std::string shape = std::to_string(r.out) + "x" + std::to_string(r.in);
    std::printf("%-40s %-12s %11s %6.4f (%6.3f) %10.4f\n", r.layer.c_str(), r.kind.c_str(),
                shape.c_str(), r.bits_per_parameter, r.file_bits_per_parameter,
                r.relative_error);
    error_sum += r.relative_error;
    parameters += r.parameters;
    paper_bits += r.bits_per_parameter * static_cast<double>(r.parameters);
  }
  std::ifstream out_file(output_path, std::ios::binary | std::ios::ate);
  const double out_bytes = static_cast<double>(out_file.tellg());
  const double in_bytes = static_cast<double>(in_size);
  if (!c.layers.empty())
    std::printf("%zu layers, %llu weights: %.4f bits per parameter, mean relative error %.4f\n",
                c.layers.size(), static_cast<unsigned long long>(c.converted_parameters),
                paper_bits / static_cast<double>(parameters),
                error_sum / static_cast<double>(c.layers.size()));
  std::printf("%llu parameters kept as they were (%s)\n",
              static_cast<unsigned long long>(c.kept_parameters),
              human_bytes(static_cast<double>(c.kept_bytes)).c_str());
  std::printf("%s: %s -> %s: %s (%.1f%%)\n", input_path.c_str(), human_bytes(in_bytes).c_str(),
              output_path.c_str(), human_bytes(out_bytes).c_str(),
              in_bytes > 0 ? 100.0 * out_bytes / in_bytes : 0.0);
}

// Whether the file starts with GGUF's magic.
bool is_gguf(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  return f.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const arguments args = parse(argc, argv);
  const std::string& input_path = args.files[0];
  try {
    const bool bar = !args.quiet && (args.progress || ::isatty(STDERR_FILENO) != 0);
    onebit::models::progress_fn progress;
    if (bar) progress = draw_progress;
    if (is_gguf(input_path)) {
      const onebit::io::gguf_file input(input_path);
      if (args.dry_run) {
        const auto todo = onebit::models::chosen(input, args.options);
        for (const onebit::io::gguf_tensor_info* t : todo)
          std::printf("%s %s [%llu, %llu] -> %s\n", t->name.c_str(), t->type_name(),
                      static_cast<unsigned long long>(t->rows()),
                      static_cast<unsigned long long>(t->cols()),
                      onebit::models::layer_name(t->name, args.options.strip_suffix).c_str());
        std::printf("%zu of %zu tensors would be converted\n", todo.size(), input.tensors().size());
        return exit_ok;
      }
      onebit::models::gguf_conversion c = onebit::models::convert(input, args.options, progress);
      if (c.layers.empty())
        std::fprintf(stderr, "onebit-convert: warning: no tensor of %s matches the include patterns; "
                             "writing the tensors unchanged\n", input_path.c_str());
      c.writer.write(args.files[1]);
      if (!args.quiet) summary(c, input_path, args.files[1]);
      return exit_ok;
    }
    const onebit::io::mapped_file input(input_path);
    if (args.from_checkpoint || args.to_checkpoint) {
      onebit::io::checkpoint_conversion c =
          args.from_checkpoint ? onebit::io::convert_from_onebit_checkpoint(input.file())
                               : onebit::io::convert_to_onebit_checkpoint(input.file());
      if (c.layers.empty())
        throw std::invalid_argument(
            input_path + " holds no " +
            (args.from_checkpoint ? "OneBit module (NAME.input_factor, NAME.weight, "
                                    "NAME.weight_scale)"
                                  : "OneBit layer (is it a onebit file?)"));
      if (args.dry_run) {
        for (const std::string& layer : c.layers) std::printf("%s\n", layer.c_str());
        std::printf("%zu OneBit layers would be converted\n", c.layers.size());
        return exit_ok;
      }
      c.out.write(args.files[1]);
      if (!args.quiet)
        std::printf("%s: %zu OneBit layers -> %s (%s layout)\n", input_path.c_str(),
                    c.layers.size(), args.files[1].c_str(),
                    args.from_checkpoint ? "onebit" : "OneBit checkpoint");
      return exit_ok;
    }
    if (args.dry_run) {
      const auto todo = onebit::models::chosen(input.file(), args.options);
      for (const onebit::io::tensor_info* t : todo)
        std::printf("%s %s %s -> %s\n", t->name.c_str(), onebit::io::to_string(t->type),
                    onebit::io::detail::shape_text(t->shape).c_str(),
                    onebit::models::layer_name(t->name, args.options.strip_suffix).c_str());
      std::printf("%zu of %zu tensors would be converted\n", todo.size(), input.tensors().size());
      return exit_ok;
    }
    const std::string& output_path = args.files[1];
    onebit::models::conversion c = onebit::models::convert(input.file(), args.options, progress);
    if (c.layers.empty())
      std::fprintf(stderr, "onebit-convert: warning: no tensor of %s matches the include patterns; "
                           "writing the tensors unchanged\n", input_path.c_str());
    c.writer.write(output_path);
    if (args.quiet) return exit_ok;
    summary(c, input_path, output_path);
    return exit_ok;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onebit-convert: %s\n", e.what());
    return exit_failure;
  }
}
