// oneDNN convolutions for float on the CPU: conv forward / backward-data /
// backward-weights and the same three for transposed convolutions.
//
// Primitives are created once per (op, shapes, geometry, bias) and cached per
// thread. They are created with format_tag::any, so oneDNN picks its fastest
// (blocked) layouts; our tensors stay plain NCHW and are reordered in and out
// only where the chosen layout differs. Reorder targets and oneDNN's scratchpad
// live in one growable per-thread workspace shared by all cached primitives
// (every buffer is transient within one call), so after the first step nothing
// is allocated.
//
// bf16 (ctx.precision): the primitives take bf16 inputs (the reorders into their
// layouts convert) and write fp32 outputs, accumulating in fp32; weight and bias
// gradients are fp32. A shape oneDNN has no bf16 kernel for runs in fp32.
//
// Include only from host-compiled code: nvcc 13 cannot parse <dnnl.hpp> in C++20.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/ops/conv.hpp"

namespace vqvae2::ops::onednn {

enum class ConvOp : std::uint8_t { fwd, bwd_data, bwd_weights, tfwd, tbwd_data, tbwd_weights };

// How a primitive's layouts are chosen. `automatic` (the default) lets oneDNN
// pick (format_tag::any, blocked layouts) unless that pads an image tensor to
// more than twice its size (1 channel blocked by 16), where plain NCHW kernels win.
// `blocked` and `plain` force one choice and exist for measurements; so does
// `channels_last` (activations NHWC, weights oneDNN's choice: brgemm kernels where
// oneDNN has them, measured faster on some CPUs, docs/performance.md).
enum class ConvLayout : std::uint8_t { automatic, blocked, plain, channels_last };

// The process's choice: VQVAE2_CONV_LAYOUT=automatic|blocked|plain|channels_last at
// start-up (unset: automatic), changeable at run time for measurements and tests.
inline ConvLayout conv_layout_from_env() {
  const char* v = std::getenv("VQVAE2_CONV_LAYOUT");
  if (!v || !*v) return ConvLayout::automatic;
  const std::string s(v);
  if (s == "automatic") return ConvLayout::automatic;
  if (s == "blocked") return ConvLayout::blocked;
  if (s == "plain") return ConvLayout::plain;
  if (s == "channels_last") return ConvLayout::channels_last;
  ::vqvae2::fail("VQVAE2_CONV_LAYOUT must be automatic, blocked, plain or channels_last, got '", s, "'.");
}

inline ConvLayout& conv_layout() {
  static ConvLayout layout = conv_layout_from_env();
  return layout;
}

// Everything a primitive depends on. x is the op's image input ([n, cin, h, w]
// for both conv and transposed conv), y its image output ([n, cout, oh, ow]).
struct ConvKey {
  ConvOp op;
  ConvLayout layout;
  bool bias;
  bool bf16;  // bf16 inputs, fp32 outputs
  std::int64_t n, cin, h, w, cout, kh, kw, oh, ow;
  ConvGeometry g;
  bool operator==(const ConvKey&) const = default;
};

struct ConvKeyHash {
  std::size_t operator()(const ConvKey& k) const {
    std::size_t s = static_cast<std::size_t>(k.op) * 31 + static_cast<std::size_t>(k.layout) * 7 + k.bias + 2 * k.bf16;
    auto mix = [&s](std::int64_t v) {
      s ^= std::hash<std::int64_t>{}(v) + 0x9e3779b97f4a7c15ULL + (s << 6) + (s >> 2);
    };
    for (std::int64_t v : {k.n, k.cin, k.h, k.w, k.cout, k.kh, k.kw, k.oh, k.ow}) mix(v);
    for (int v : {k.g.stride_h, k.g.stride_w, k.g.pad_top, k.g.pad_bottom, k.g.pad_left, k.g.pad_right}) mix(v);
    return s;
  }
};

// A growable 64-byte aligned buffer whose contents need not survive growth.
class ScratchBuffer {
 public:
  void* get(std::size_t bytes) {
    if (bytes > capacity_) {
      ptr_.reset(static_cast<char*>(Allocator<Cpu>::allocate(bytes)));
      capacity_ = bytes;
    }
    return ptr_.get();
  }
  std::size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(char* p) const { Allocator<Cpu>::deallocate(p); }
  };
  std::unique_ptr<char, Free> ptr_;
  std::size_t capacity_ = 0;
};

// One cached primitive with its reorders. Slots: 0, 1 = the two inputs, 2 = the
// output; the bias is an input (forward) or an output (backward-weights).
struct ConvPlan {
  dnnl::primitive prim;
  dnnl::memory::desc user_md[3], prim_md[3];
  dnnl::memory user_mem[3], prim_mem[3], bias_mem, scratch_mem;
  bool reorder[3] = {false, false, false};
  dnnl::primitive reorder_prim[3];
  dnnl::primitive out_accumulate;  // prim -> user with a sum post-op (backward-weights only)
  std::unordered_map<int, dnnl::memory> args, reorder_args[3], accumulate_args;
  std::size_t scratch_bytes = 0;
  bool bias_is_output = false;
  // Transposed-conv forward with bias: oneDNN 2.6 would book an output-sized scratchpad
  // for it, so the primitive runs without bias and execute() adds it to the plain output.
  bool bias_after = false;
  // Backward-weights with a top padding its AVX-512 kernel rejects (causal convs):
  // x is reordered into rows [shift_rows, shift_rows + h) of a zeroed taller buffer
  // and the primitive sees that much less top padding.
  std::int64_t shift_rows = 0;
  dnnl::memory shifted_mem;
};

struct ConvState {
  std::unordered_map<ConvKey, std::unique_ptr<ConvPlan>, ConvKeyHash> plans;
  // Reorder targets. A single op uses slots 0, 1, 2; the backward-weights half of a
  // fused backward uses 2 (free again by then), 3, 4, so only 0, 2 and rarely 3 grow
  // to activation size.
  ScratchBuffer slot[5], scratchpad, bias;
};

// How often this thread took the two special paths, for tests to assert that the
// intended one ran: plans `automatic` rebuilt in plain NCHW (blocking would pad an
// image tensor more than twice), and backward-weights runs through the shifted-rows
// input (ConvPlan::shift_rows). Never reset by clear_cache(); tests reset them.
// bf16_fallback_plans: bf16 plans oneDNN had no bf16 kernel for, built in fp32 instead.
struct ConvPathCounts {
  std::uint64_t plain_fallback_plans = 0, shifted_rows_runs = 0, bf16_fallback_plans = 0;
};

// Whether oneDNN runs bf16 multiply-adds natively here (AVX-512 BF16, vdpbf16ps, or
// AMX): without them its bf16 kernels emulate the conversion and lose to fp32.
inline bool bf16_native() {
  static const bool native = [] {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
    return (isa & bf16) == bf16;
  }();
  return native;
}

inline ConvPathCounts& path_counts() {
  thread_local ConvPathCounts counts;
  return counts;
}

inline ConvState& conv_state() {
  // Per thread: plans hold memory objects whose handles are rebound on every call.
  thread_local ConvState state;
  return state;
}

inline std::unique_ptr<ConvPlan> make_plan(dnnl::engine& eng, const ConvKey& k, bool plain) {
  const bool nhwc = !plain && k.layout == ConvLayout::channels_last;
  using dnnl::memory;
  using tag = memory::format_tag;
  const bool transposed = k.op == ConvOp::tfwd || k.op == ConvOp::tbwd_data || k.op == ConvOp::tbwd_weights;
  const memory::dims xd{k.n, k.cin, k.h, k.w}, yd{k.n, k.cout, k.oh, k.ow}, wd{k.cout, k.cin, k.kh, k.kw}, bd{k.cout};
  // PyTorch's transposed-conv weight [Cin, Cout, KH, KW] is oneDNN's {OC, IC, KH, KW} stored as iohw.
  const tag wtag = transposed ? tag::iohw : tag::oihw;
  const auto f32 = memory::data_type::f32, in_type = k.bf16 ? memory::data_type::bf16 : f32;
  const memory::desc ux(xd, f32, tag::nchw), uy(yd, f32, tag::nchw), uw(wd, f32, wtag), ub(bd, f32, tag::x);
  // `a*` in the op's input precision, `a*_out` fp32: x is an input of the forward and
  // backward-weights ops and the output of backward-data, y the reverse, w an input
  // except of backward-weights (whose gradients are fp32).
  const auto x_tag = plain ? tag::nchw : (nhwc ? tag::nhwc : tag::any), y_tag = x_tag, w_tag = plain ? wtag : tag::any;
  const memory::desc ax(xd, in_type, x_tag), ay(yd, in_type, y_tag), aw(wd, in_type, w_tag);
  const memory::desc ax_out(xd, f32, x_tag), ay_out(yd, f32, y_tag), aw_out(wd, f32, w_tag);
  const memory::dims strides{k.g.stride_h, k.g.stride_w}, pl{k.g.pad_top, k.g.pad_left},
      pr{k.g.pad_bottom, k.g.pad_right};
  const auto conv_alg = dnnl::algorithm::convolution_direct;
  const auto deconv_alg = dnnl::algorithm::deconvolution_direct;
  const auto train = dnnl::prop_kind::forward_training;

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  auto plan = std::make_unique<ConvPlan>();
  int arg[3] = {0, 0, 0};
  int bias_arg = 0;
  memory::desc scratch_md;
  switch (k.op) {
    case ConvOp::fwd: {
      auto d = k.bias ? dnnl::convolution_forward::desc(train, conv_alg, ax, aw, ub, ay_out, strides, pl, pr)
                      : dnnl::convolution_forward::desc(train, conv_alg, ax, aw, ay_out, strides, pl, pr);
      dnnl::convolution_forward::primitive_desc pd(d, attr, eng);
      plan->prim = dnnl::convolution_forward(pd);
      plan->user_md[0] = ux, plan->user_md[1] = uw, plan->user_md[2] = uy;
      plan->prim_md[0] = pd.src_desc(), plan->prim_md[1] = pd.weights_desc(), plan->prim_md[2] = pd.dst_desc();
      arg[0] = DNNL_ARG_SRC, arg[1] = DNNL_ARG_WEIGHTS, arg[2] = DNNL_ARG_DST, bias_arg = DNNL_ARG_BIAS;
      scratch_md = pd.scratchpad_desc();
      break;
    }
    case ConvOp::bwd_data: {
      dnnl::convolution_forward::primitive_desc hint(
          dnnl::convolution_forward::desc(train, conv_alg, ax, aw, ay, strides, pl, pr), eng);
      dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(conv_alg, ax_out, aw, ay, strides, pl, pr), attr, eng, hint);
      plan->prim = dnnl::convolution_backward_data(pd);
      plan->user_md[0] = uy, plan->user_md[1] = uw, plan->user_md[2] = ux;
      plan->prim_md[0] = pd.diff_dst_desc(), plan->prim_md[1] = pd.weights_desc(),
      plan->prim_md[2] = pd.diff_src_desc();
      arg[0] = DNNL_ARG_DIFF_DST, arg[1] = DNNL_ARG_WEIGHTS, arg[2] = DNNL_ARG_DIFF_SRC;
      scratch_md = pd.scratchpad_desc();
      break;
    }
    case ConvOp::bwd_weights: {
      auto make_pd = [&](const memory::desc& src, const memory::dims& pad_l) {
        dnnl::convolution_forward::primitive_desc hint(
            k.bias ? dnnl::convolution_forward::desc(train, conv_alg, src, aw, ub, ay, strides, pad_l, pr)
                   : dnnl::convolution_forward::desc(train, conv_alg, src, aw, ay, strides, pad_l, pr),
            eng);
        auto d = k.bias ? dnnl::convolution_backward_weights::desc(conv_alg, src, aw_out, ub, ay, strides, pad_l, pr)
                        : dnnl::convolution_backward_weights::desc(conv_alg, src, aw_out, ay, strides, pad_l, pr);
        return dnnl::convolution_backward_weights::primitive_desc(d, attr, eng, hint);
      };
      auto pd = make_pd(ax, pl);
      const std::int64_t max_top = (k.kh - 1) / 2;
      if (!plain && k.g.pad_top > max_top && std::string(pd.impl_info_str()).find("avx512") == std::string::npos) {
        // oneDNN 2.6's AVX-512 kernel wants pad_top <= (kh-1)/2 and falls back to AVX2 (~40% slower).
        const std::int64_t shift = k.g.pad_top - max_top;
        auto shifted =
            make_pd(memory::desc({k.n, k.cin, k.h + shift, k.w}, in_type, x_tag), memory::dims{max_top, k.g.pad_left});
        if (std::string(shifted.impl_info_str()).find("avx512") != std::string::npos) {
          pd = shifted;
          plan->shift_rows = shift;
        }
      }
      plan->prim = dnnl::convolution_backward_weights(pd);
      plan->user_md[0] = ux, plan->user_md[1] = uy, plan->user_md[2] = uw;
      plan->prim_md[0] = pd.src_desc(), plan->prim_md[1] = pd.diff_dst_desc(),
      plan->prim_md[2] = pd.diff_weights_desc();
      arg[0] = DNNL_ARG_SRC, arg[1] = DNNL_ARG_DIFF_DST, arg[2] = DNNL_ARG_DIFF_WEIGHTS, bias_arg = DNNL_ARG_DIFF_BIAS;
      plan->bias_is_output = true;
      scratch_md = pd.scratchpad_desc();
      break;
    }
    case ConvOp::tfwd: {
      dnnl::deconvolution_forward::desc d(train, deconv_alg, ax, aw, ay_out, strides, pl, pr);
      plan->bias_after = k.bias;
      dnnl::deconvolution_forward::primitive_desc pd(d, attr, eng);
      plan->prim = dnnl::deconvolution_forward(pd);
      plan->user_md[0] = ux, plan->user_md[1] = uw, plan->user_md[2] = uy;
      plan->prim_md[0] = pd.src_desc(), plan->prim_md[1] = pd.weights_desc(), plan->prim_md[2] = pd.dst_desc();
      arg[0] = DNNL_ARG_SRC, arg[1] = DNNL_ARG_WEIGHTS, arg[2] = DNNL_ARG_DST, bias_arg = DNNL_ARG_BIAS;
      scratch_md = pd.scratchpad_desc();
      break;
    }
    case ConvOp::tbwd_data: {
      dnnl::deconvolution_forward::primitive_desc hint(
          dnnl::deconvolution_forward::desc(train, deconv_alg, ax, aw, ay, strides, pl, pr), eng);
      dnnl::deconvolution_backward_data::primitive_desc pd(
          dnnl::deconvolution_backward_data::desc(deconv_alg, ax_out, aw, ay, strides, pl, pr), attr, eng, hint);
      plan->prim = dnnl::deconvolution_backward_data(pd);
      plan->user_md[0] = uy, plan->user_md[1] = uw, plan->user_md[2] = ux;
      plan->prim_md[0] = pd.diff_dst_desc(), plan->prim_md[1] = pd.weights_desc(),
      plan->prim_md[2] = pd.diff_src_desc();
      arg[0] = DNNL_ARG_DIFF_DST, arg[1] = DNNL_ARG_WEIGHTS, arg[2] = DNNL_ARG_DIFF_SRC;
      scratch_md = pd.scratchpad_desc();
      break;
    }
    case ConvOp::tbwd_weights: {
      dnnl::deconvolution_forward::primitive_desc hint(
          k.bias ? dnnl::deconvolution_forward::desc(train, deconv_alg, ax, aw, ub, ay, strides, pl, pr)
                 : dnnl::deconvolution_forward::desc(train, deconv_alg, ax, aw, ay, strides, pl, pr),
          eng);
      auto d = k.bias ? dnnl::deconvolution_backward_weights::desc(deconv_alg, ax, aw_out, ub, ay, strides, pl, pr)
                      : dnnl::deconvolution_backward_weights::desc(deconv_alg, ax, aw_out, ay, strides, pl, pr);
      dnnl::deconvolution_backward_weights::primitive_desc pd(d, attr, eng, hint);
      plan->prim = dnnl::deconvolution_backward_weights(pd);
      plan->user_md[0] = ux, plan->user_md[1] = uy, plan->user_md[2] = uw;
      plan->prim_md[0] = pd.src_desc(), plan->prim_md[1] = pd.diff_dst_desc(),
      plan->prim_md[2] = pd.diff_weights_desc();
      arg[0] = DNNL_ARG_SRC, arg[1] = DNNL_ARG_DIFF_DST, arg[2] = DNNL_ARG_DIFF_WEIGHTS, bias_arg = DNNL_ARG_DIFF_BIAS;
      plan->bias_is_output = true;
      scratch_md = pd.scratchpad_desc();
      break;
    }
  }

  // Memory objects without buffers: handles are bound on every call.
  for (int i = 0; i < 3; ++i) {
    plan->user_mem[i] = memory(plan->user_md[i], eng, DNNL_MEMORY_NONE);
    plan->reorder[i] = plan->prim_md[i] != plan->user_md[i];
    // Backward-weights keeps its own output object: with accumulate it points at the workspace.
    const bool own = plan->reorder[i] || (i == 2 && plan->bias_is_output);
    plan->prim_mem[i] = own ? memory(plan->prim_md[i], eng, DNNL_MEMORY_NONE) : plan->user_mem[i];
    plan->args[arg[i]] = plan->prim_mem[i];
  }
  for (int i = plan->shift_rows ? 1 : 0; i < 2; ++i)
    if (plan->reorder[i]) {
      plan->reorder_prim[i] = dnnl::reorder(plan->user_mem[i], plan->prim_mem[i]);
      plan->reorder_args[i] = {{DNNL_ARG_FROM, plan->user_mem[i]}, {DNNL_ARG_TO, plan->prim_mem[i]}};
    }
  if (plan->shift_rows) {
    plan->shifted_mem =
        memory(plan->prim_md[0].submemory_desc(xd, memory::dims{0, 0, plan->shift_rows, 0}), eng, DNNL_MEMORY_NONE);
    plan->reorder_prim[0] = dnnl::reorder(plan->user_mem[0], plan->shifted_mem);
    plan->reorder_args[0] = {{DNNL_ARG_FROM, plan->user_mem[0]}, {DNNL_ARG_TO, plan->shifted_mem}};
  }
  if (plan->reorder[2]) {
    plan->reorder_prim[2] = dnnl::reorder(plan->prim_mem[2], plan->user_mem[2]);
    plan->reorder_args[2] = {{DNNL_ARG_FROM, plan->prim_mem[2]}, {DNNL_ARG_TO, plan->user_mem[2]}};
  }
  if (plan->bias_is_output) {
    // Accumulating into the plain weight gradient is a reorder with a sum post-op
    // from a separate output buffer (backward-weights primitives take no post-ops).
    dnnl::post_ops po;
    po.append_sum(1.0f);
    dnnl::primitive_attr acc_attr;
    acc_attr.set_post_ops(po);
    plan->out_accumulate =
        dnnl::reorder(dnnl::reorder::primitive_desc(eng, plan->prim_md[2], eng, plan->user_md[2], acc_attr));
    plan->accumulate_args = {{DNNL_ARG_FROM, plan->prim_mem[2]}, {DNNL_ARG_TO, plan->user_mem[2]}};
  }
  if (k.bias && !plan->bias_after) {
    plan->bias_mem = memory(ub, eng, DNNL_MEMORY_NONE);
    plan->args[bias_arg] = plan->bias_mem;
  }
  plan->scratch_bytes = scratch_md.get_size();
  if (plan->scratch_bytes) {
    plan->scratch_mem = memory(scratch_md, eng, DNNL_MEMORY_NONE);
    plan->args[DNNL_ARG_SCRATCHPAD] = plan->scratch_mem;
  }
  return plan;
}

inline constexpr int kSingleOpSlots[3] = {0, 1, 2};
// A lone backward-weights (no input gradient) puts its activation-sized x and dy in
// slots 0 and 2, which forward ops grow to that size anyway, so slot 1 stays weight-sized.
inline constexpr int kWeightsOnlySlots[3] = {0, 2, 4};

inline ConvPlan& plan_for(Context<Cpu>& ctx, const ConvKey& key) {
  ConvState& st = conv_state();
  auto it = st.plans.find(key);
  if (it == st.plans.end()) {
    dnnl::engine& eng = ctx.engine<dnnl::engine>();
    std::unique_ptr<ConvPlan> plan;
    ConvKey build = key;
    try {
      plan = make_plan(eng, build, build.layout == ConvLayout::plain);
    } catch (const dnnl::error&) {
      if (!key.bf16) throw;
      build.bf16 = false;
      plan = make_plan(eng, build, build.layout == ConvLayout::plain);
      ++path_counts().bf16_fallback_plans;
    }
    if (key.layout == ConvLayout::automatic) {
      // Slot of the weights: 1 for forward and backward-data, 2 for backward-weights.
      const int weight_slot = plan->bias_is_output ? 2 : 1;
      bool padded = false;
      for (int i = 0; i < 3; ++i)
        padded |= i != weight_slot && plan->prim_md[i].get_size() > 2 * plan->user_md[i].get_size();
      if (padded) {
        plan = make_plan(eng, build, true);
        ++path_counts().plain_fallback_plans;
      }
    }
    it = st.plans.emplace(key, std::move(plan)).first;
  }
  return *it->second;
}

// Runs one op. in0/in1/out are the plain buffers of the slots described at
// ConvPlan; bias is read (forward) or written (backward-weights) and may be null
// when key.bias is false. accumulate (backward-weights only) adds into out/bias.
// Reorders of in0, in1, out go to workspace slots slots[0..2]. ready1, when given,
// already holds in1 in the primitive's layout (shared between the two backward
// ops). Returns where in0 lies in the primitive's layout (valid until the next call).
inline const void* execute(Context<Cpu>& ctx, const ConvKey& key, const float* in0, const float* in1, float* out,
                           float* bias, bool accumulate, const int (&slots)[3] = kSingleOpSlots,
                           const void* ready1 = nullptr) {
  dnnl::stream& strm = ctx.stream<dnnl::stream>();
  ConvState& st = conv_state();
  ConvPlan& p = plan_for(ctx, key);

  const float* inputs[2] = {in0, in1};
  bool do_reorder[2] = {p.reorder[0], p.reorder[1] && !ready1};
  for (int i = 0; i < 2; ++i) {
    p.user_mem[i].set_data_handle(const_cast<float*>(inputs[i]));
    if (do_reorder[i]) p.prim_mem[i].set_data_handle(st.slot[slots[i]].get(p.prim_md[i].get_size()));
  }
  if (p.shift_rows) {
    ++path_counts().shifted_rows_runs;
    // The extra rows must read as zero padding; the slot is shared, so clear it each time.
    void* buf = p.prim_mem[0].get_data_handle();
    std::memset(buf, 0, p.prim_md[0].get_size());
    p.shifted_mem.set_data_handle(buf);
  }
  if (ready1) p.prim_mem[1].set_data_handle(const_cast<void*>(ready1));
  p.user_mem[2].set_data_handle(out);
  const bool out_separate = p.reorder[2] || (p.bias_is_output && accumulate);
  if (out_separate)
    p.prim_mem[2].set_data_handle(st.slot[slots[2]].get(p.prim_md[2].get_size()));
  else if (p.bias_is_output)
    p.prim_mem[2].set_data_handle(out);
  float* bias_target = bias;
  if (key.bias && !p.bias_after) {
    if (p.bias_is_output && accumulate)
      bias_target = static_cast<float*>(st.bias.get(static_cast<std::size_t>(key.cout) * sizeof(float)));
    p.bias_mem.set_data_handle(bias_target);
  }
  if (p.scratch_bytes) p.scratch_mem.set_data_handle(st.scratchpad.get(p.scratch_bytes));

  for (int i = 0; i < 2; ++i)
    if (do_reorder[i]) p.reorder_prim[i].execute(strm, p.reorder_args[i]);
  p.prim.execute(strm, p.args);
  if (p.bias_is_output && accumulate)
    p.out_accumulate.execute(strm, p.accumulate_args);
  else if (p.reorder[2])
    p.reorder_prim[2].execute(strm, p.reorder_args[2]);
  strm.wait();
  if (key.bias && p.bias_is_output && accumulate)
    for (std::int64_t k = 0; k < key.cout; ++k) bias[k] += bias_target[k];
  if (p.bias_after) {
    // out is plain [n, cout, oh, ow]: one (image, channel) plane per iteration.
    const std::int64_t plane = key.oh * key.ow, planes = key.n * key.cout;
#pragma omp parallel for schedule(static) if (planes * plane >= 32768)
    for (std::int64_t q = 0; q < planes; ++q) {
      float* o = out + q * plane;
      const float b = bias[q % key.cout];
#pragma omp simd
      for (std::int64_t i = 0; i < plane; ++i) o[i] += b;
    }
  }
  return p.prim_mem[0].get_data_handle();
}

// Backward-data then backward-weights on the same output gradient, which is
// reordered once when both primitives want it in the same layout.
inline void execute_backward(Context<Cpu>& ctx, const ConvKey& data_key, const ConvKey& weights_key, const float* x,
                             const float* w, const float* dy, float* dx, float* dw, float* db, bool accumulate) {
  const void* dy_ready = execute(ctx, data_key, dy, w, dx, nullptr, false);
  ConvPlan& pd = plan_for(ctx, data_key);
  ConvPlan& pw = plan_for(ctx, weights_key);
  const bool share = pd.reorder[0] && pw.reorder[1] && pd.prim_md[0] == pw.prim_md[1];
  static constexpr int weight_slots[3] = {2, 3, 4};
  execute(ctx, weights_key, x, dy, dw, db, accumulate, weight_slots, share ? dy_ready : nullptr);
}

// Bytes held by this thread's workspace (reorder slots, scratchpad), for memory reports.
inline std::size_t workspace_bytes() {
  const ConvState& st = conv_state();
  std::size_t n = st.scratchpad.capacity() + st.bias.capacity();
  for (const auto& s : st.slot) n += s.capacity();
  return n;
}

// Drops this thread's cached primitives and workspace (e.g. after a shape change
// that will not recur).
inline void clear_cache() {
  ConvState& st = conv_state();
  st = ConvState{};
}

inline ConvKey conv_key(const Context<Cpu>& ctx, ConvOp op, const Shape& x, const Shape& y, std::int64_t kh,
                        std::int64_t kw, const ConvGeometry& g, bool bias) {
  const bool bf16 = ctx.precision == Precision::bf16 && bf16_native();
  return ConvKey{op, conv_layout(), bias, bf16, x[0], x[1], x[2], x[3], y[1], kh, kw, y[2], y[3], g};
}

// y = conv2d(x, w) + b; y already has its shape.
inline void conv2d_forward(Context<Cpu>& ctx, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                           const Tensor<float, Cpu>* b, Tensor<float, Cpu>& y, const ConvGeometry& g) {
  execute(ctx, conv_key(ctx, ConvOp::fwd, x.shape(), y.shape(), w.dim(2), w.dim(3), g, b != nullptr), x.data(),
          w.data(), y.data(), b ? const_cast<float*>(b->data()) : nullptr, false);
}
inline void conv2d_backward_data(Context<Cpu>& ctx, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& w,
                                 Tensor<float, Cpu>& dx, const ConvGeometry& g) {
  execute(ctx, conv_key(ctx, ConvOp::bwd_data, dx.shape(), dy.shape(), w.dim(2), w.dim(3), g, false), dy.data(),
          w.data(), dx.data(), nullptr, false);
}
inline void conv2d_backward_weights(Context<Cpu>& ctx, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& dy,
                                    Tensor<float, Cpu>& dw, Tensor<float, Cpu>* db, const ConvGeometry& g,
                                    bool accumulate) {
  execute(ctx, conv_key(ctx, ConvOp::bwd_weights, x.shape(), dy.shape(), dw.dim(2), dw.dim(3), g, db != nullptr),
          x.data(), dy.data(), dw.data(), db ? db->data() : nullptr, accumulate, kWeightsOnlySlots);
}
inline void conv_transpose2d_forward(Context<Cpu>& ctx, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                                     const Tensor<float, Cpu>* b, Tensor<float, Cpu>& y, const ConvGeometry& g) {
  execute(ctx, conv_key(ctx, ConvOp::tfwd, x.shape(), y.shape(), w.dim(2), w.dim(3), g, b != nullptr), x.data(),
          w.data(), y.data(), b ? const_cast<float*>(b->data()) : nullptr, false);
}
inline void conv_transpose2d_backward_data(Context<Cpu>& ctx, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& w,
                                           Tensor<float, Cpu>& dx, const ConvGeometry& g) {
  execute(ctx, conv_key(ctx, ConvOp::tbwd_data, dx.shape(), dy.shape(), w.dim(2), w.dim(3), g, false), dy.data(),
          w.data(), dx.data(), nullptr, false);
}
inline void conv_transpose2d_backward_weights(Context<Cpu>& ctx, const Tensor<float, Cpu>& x,
                                              const Tensor<float, Cpu>& dy, Tensor<float, Cpu>& dw,
                                              Tensor<float, Cpu>* db, const ConvGeometry& g, bool accumulate) {
  execute(ctx, conv_key(ctx, ConvOp::tbwd_weights, x.shape(), dy.shape(), dw.dim(2), dw.dim(3), g, db != nullptr),
          x.data(), dy.data(), dw.data(), db ? db->data() : nullptr, accumulate, kWeightsOnlySlots);
}

// dx = backward-data and dw (+)= backward-weights of conv2d, sharing the reorder of dy.
inline void conv2d_backward(Context<Cpu>& ctx, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                            const Tensor<float, Cpu>& dy, Tensor<float, Cpu>& dx, Tensor<float, Cpu>& dw,
                            Tensor<float, Cpu>* db, const ConvGeometry& g, bool accumulate) {
  execute_backward(ctx, conv_key(ctx, ConvOp::bwd_data, x.shape(), dy.shape(), w.dim(2), w.dim(3), g, false),
                   conv_key(ctx, ConvOp::bwd_weights, x.shape(), dy.shape(), w.dim(2), w.dim(3), g, db != nullptr),
                   x.data(), w.data(), dy.data(), dx.data(), dw.data(), db ? db->data() : nullptr, accumulate);
}
inline void conv_transpose2d_backward(Context<Cpu>& ctx, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                                      const Tensor<float, Cpu>& dy, Tensor<float, Cpu>& dx, Tensor<float, Cpu>& dw,
                                      Tensor<float, Cpu>* db, const ConvGeometry& g, bool accumulate) {
  execute_backward(ctx, conv_key(ctx, ConvOp::tbwd_data, x.shape(), dy.shape(), w.dim(2), w.dim(3), g, false),
                   conv_key(ctx, ConvOp::tbwd_weights, x.shape(), dy.shape(), w.dim(2), w.dim(3), g, db != nullptr),
                   x.data(), w.data(), dy.data(), dx.data(), dw.data(), db ? db->data() : nullptr, accumulate);
}

}  // namespace vqvae2::ops::onednn
