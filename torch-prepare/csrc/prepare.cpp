// TorchScript modules loaded from memory, optionally frozen and optimised for inference
// (torch::jit::freeze + torch::jit::optimize_for_inference: batch norm folded into the
// convolutions, convolution + ReLU fused, weights prepacked for oneDNN), and run.
// Every function catches libtorch's exceptions and returns the message in *err (malloc'd).

#include <torch/script.h>
#include <torch/csrc/jit/api/module.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

struct prep_module {
  torch::jit::Module module;
};

static char *copy_message(const char *what) {
  size_t n = std::strlen(what);
  char *out = static_cast<char *>(std::malloc(n + 1));
  if (out != nullptr) std::memcpy(out, what, n + 1);
  return out;
}

extern "C" {

prep_module *prep_load(const char *data, size_t len, int optimize, char **err) {
  try {
    std::istringstream in(std::string(data, len));
    torch::jit::Module m = torch::jit::load(in, c10::Device(c10::kCPU));
    m.eval();
    if (optimize != 0) {
      torch::jit::Module frozen = torch::jit::freeze(m);
      m = torch::jit::optimize_for_inference(frozen);
    }
    return new prep_module{std::move(m)};
  } catch (const std::exception &e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return nullptr;
}

at::Tensor *prep_forward(prep_module *p, const at::Tensor *input, char **err) {
  try {
    c10::InferenceMode guard;
    std::vector<c10::IValue> inputs{*input};
    c10::IValue out = p->module.forward(inputs);
    if (!out.isTensor()) {
      *err = copy_message("the model's output is not a tensor");
      return nullptr;
    }
    return new at::Tensor(out.toTensor());
  } catch (const std::exception &e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return nullptr;
}

void prep_free(prep_module *p) { delete p; }

void prep_free_message(char *message) { std::free(message); }

}  // extern "C"
