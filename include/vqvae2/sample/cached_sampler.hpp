// Cached incremental sampling of a PixelSNAIL prior: a new raster position runs one
// column of the network instead of the whole network on the prefix.
//
// Every layer of the prior is causal, so the outputs at position p depend on inputs
// at positions <= p only. The sampler keeps, per layer input, the values at every
// position computed so far ([B][P][C], position-major per sample), and for a new
// position p evaluates each layer at p alone: a convolution is a sum over its kernel
// taps of W_tap (out x in) times the cached input at p + tap offset (masked taps,
// all zero after weight norm, are dropped, so no tap reads a position >= p where the
// model reads none); the attention keeps the keys and values of earlier positions
// and computes the new query's row only; the conditioning network and every block's
// 1x1 condition projection run once, on the whole map, before the first position.
//
// It is the same function as PixelSNAIL::forward in evaluation mode (the tests hold
// its draws to sample_naive's, code for code), with weights read from the model
// when begin() is called: weights changed afterwards are not seen.
// Buffers are sized by begin(); a step allocates nothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if !defined(__CUDACC__)
#include <Eigen/Core>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/ops/elementwise.hpp"
#include "vqvae2/sample/categorical.hpp"
#include "vqvae2/sample/naive_sampler.hpp"

namespace vqvae2::sample {

namespace cached_detail {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Vec = Eigen::VectorXf;
using ConstStrided = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;

// Values of one feature map at every position: sample b, position p holds C floats.
// A map read only at the position being computed (the input of a 1x1 convolution)
// keeps that one position (positions == 1): every p maps to it.
struct MapCache {
  std::int64_t batch = 0, positions = 0, channels = 0;
  std::vector<float> data;
  void reset(std::int64_t B, std::int64_t P, std::int64_t C) {
    batch = B, positions = P, channels = C;
    data.assign(static_cast<std::size_t>(B * P * C), 0.0f);
  }
  std::int64_t slot(std::int64_t p) const { return positions == 1 ? 0 : p; }
  float* at(std::int64_t b, std::int64_t p) { return data.data() + (b * positions + slot(p)) * channels; }
  const float* at(std::int64_t b, std::int64_t p) const { return data.data() + (b * positions + slot(p)) * channels; }
  // The [C x B] matrix of position p (column b = sample b).
  ConstStrided column(std::int64_t p) const {
    return ConstStrided(at(0, p), channels, batch, Eigen::OuterStride<>(positions * channels));
  }
  void store(std::int64_t p, const Mat& x) {
    for (std::int64_t b = 0; b < batch; ++b) std::copy_n(x.col(b).data(), channels, at(b, p));
  }
  // From an NCHW tensor [B, C, H, W] with H * W == positions.
  void load_nchw(const Tensor<float, Cpu>& t) {
    reset(t.dim(0), t.dim(2) * t.dim(3), t.dim(1));
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t p = 0; p < positions; ++p) at(b, p)[c] = t[(b * channels + c) * positions + p];
  }
};

template <class F>
void map_inplace(Mat& m, F f) {
  float* p = m.data();
  for (Eigen::Index i = 0, n = m.size(); i < n; ++i) p[i] = f(p[i]);
}
inline float elu(float x) { return ops::Elu::forward(x); }

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// out[r][0:8*NC] = sum_k w[r, k] xt[k, 0:8*NC] for 4 rows r at once: xt holds the
// batch contiguous per k (8 samples to a vector), so every weight is read once, from
// memory, and used for 8 * NC samples. (Eigen's general product packs every block of
// the weight matrix into a buffer before multiplying it, on every call: for a weight
// used once per step that copy costs more than the product.)
using Float8 = float __attribute__((vector_size(32)));  // 8 lanes: AVX2's vector, half of AVX-512's

template <int NC>
inline void rows_times_batch(const float* w, Eigen::Index ld, Eigen::Index K, const float* xt, Eigen::Index xt_ld,
                             float out[4][8 * NC]) {
  Float8 acc[4][NC] = {};  // local: the compiler keeps them in registers (nothing aliases them)
  const float *w0 = w, *w1 = w + ld, *w2 = w + 2 * ld, *w3 = w + 3 * ld;
  for (Eigen::Index k = 0; k < K; ++k) {
    const float* xk = xt + k * xt_ld;
    const float a = w0[k], b = w1[k], c = w2[k], d = w3[k];
    for (int j = 0; j < NC; ++j) {
      Float8 x;
      std::memcpy(&x, xk + 8 * j, sizeof x);
      acc[0][j] += a * x;
      acc[1][j] += b * x;
      acc[2][j] += c * x;
      acc[3][j] += d * x;
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < NC; ++j) std::memcpy(out[r] + 8 * j, &acc[r][j], sizeof(Float8));
}

// Rows [r0, r0 + n) of y [out x B] = w x + bias, from xt [K x Bp] (x transposed, the
// batch padded to Bp, a multiple of 8, with zeros).
inline void affine_rows_batch(const RowMat& w, const Vec& bias, const float* xt, Eigen::Index Bp, Eigen::Index B,
                              Eigen::Index r0, Eigen::Index n, Mat& y) {
  const Eigen::Index K = w.cols();
  Eigen::Index o = r0;
  const Eigen::Index end = r0 + n;
  for (; o + 4 <= end; o += 4)
    for (Eigen::Index c0 = 0; c0 < Bp; c0 += 32) {
      float acc[4][32];
      const Eigen::Index width = std::min<Eigen::Index>(32, Bp - c0);
      const float* w_o = w.data() + o * K;
      switch (width / 8) {
        case 1:
          rows_times_batch<1>(w_o, K, K, xt + c0, Bp, reinterpret_cast<float(*)[8]>(acc));
          break;
        case 2:
          rows_times_batch<2>(w_o, K, K, xt + c0, Bp, reinterpret_cast<float(*)[16]>(acc));
          break;
        case 3:
          rows_times_batch<3>(w_o, K, K, xt + c0, Bp, reinterpret_cast<float(*)[24]>(acc));
          break;
        default:
          rows_times_batch<4>(w_o, K, K, xt + c0, Bp, acc);
          break;
      }
      const float* flat = &acc[0][0];
      for (int r = 0; r < 4; ++r)
        for (Eigen::Index b = c0; b < std::min(B, c0 + width); ++b)
          y(o + r, b) = flat[r * width + (b - c0)] + bias[o + r];
    }
  for (; o < end; ++o)  // the last rows when n is not a multiple of 4
    for (Eigen::Index b = 0; b < B; ++b) {
      float s = 0;
      for (Eigen::Index k = 0; k < K; ++k) s += w(o, k) * xt[k * Bp + b];
      y(o, b) = s + bias[o];
    }
}

// The batch padding of affine()'s scratch: xt holds K x padded_batch(B) floats.
inline Eigen::Index padded_batch(Eigen::Index B) { return (B + 7) / 8 * 8; }

// y = w x + bias. A large weight's rows are split across the threads: at batch 1 a
// step streams every weight once, and one core alone cannot draw the memory bandwidth.
// Batch 1 is a matrix-vector product (Eigen's streams the weight once); a larger batch
// goes through rows_times_batch on x transposed into xt (padded_batch(B) x K floats,
// the caller's, so that a step allocates nothing).
inline void affine(const RowMat& w, const Vec& bias, const Mat& x, Mat& y, float* xt = nullptr) {
  const Eigen::Index rows = w.rows(), B = x.cols(), K = w.cols(), Bp = padded_batch(B);
  const bool batched = B > 1 && xt;
#pragma omp parallel if (w.size() * x.cols() >= (1 << 17))
  {
#if defined(_OPENMP)
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
#else
    const int nt = 1, t = 0;
#endif
    if (batched) {  // each thread transposes its share of x, then all of xt is read
      for (Eigen::Index k = K * t / nt; k < K * (t + 1) / nt; ++k) {
        for (Eigen::Index b = 0; b < B; ++b) xt[k * Bp + b] = x(k, b);
        for (Eigen::Index b = B; b < Bp; ++b) xt[k * Bp + b] = 0;
      }
#pragma omp barrier
    }
    // Row ranges in multiples of 4 (rows_times_batch's block).
    const Eigen::Index blocks = (rows + 3) / 4, b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
    const Eigen::Index r0 = std::min(rows, 4 * b0), n = std::min(rows, 4 * b1) - r0;
    if (n > 0) {
      if (batched) {
        affine_rows_batch(w, bias, xt, Bp, B, r0, n, y);
      } else {
        y.middleRows(r0, n).noalias() = w.middleRows(r0, n) * x;
        y.middleRows(r0, n).colwise() += bias.segment(r0, n);
      }
    }
  }
}

// A weight-normalised convolution evaluated at one output position: the inputs its
// non-zero taps read are gathered into one column per sample (zeros outside the
// map), then one product with the taps' weights side by side.
struct PositionConv {
  int in = 0, out = 0;
  std::vector<std::pair<int, int>> offsets;  // per kept tap: the input read is (r + di, c + dj)
  RowMat w;                                  // [out x taps * in]
  Vec bias;
  Mat gathered;                   // [taps * in x B]
  std::vector<float> gathered_t;  // gathered transposed, for affine() at batch > 1

  void build(Context<Cpu>& ctx, nn::WNConv2d<float, Cpu>& conv) {
    const Tensor<float, Cpu>& wt = conv.compute_weight(ctx);
    in = conv.in_channels(), out = conv.out_channels();
    const int kh = conv.kernel_h(), kw = conv.kernel_w();
    const ops::ConvGeometry& g = conv.geometry();
    VQVAE2_CHECK(g.stride_h == 1 && g.stride_w == 1, "CachedSampler: strided convolutions are not supported.");
    auto at = [&](int o, int c, int i, int j) {
      return wt[((static_cast<std::int64_t>(o) * in + c) * kh + i) * kw + j];
    };
    std::vector<std::pair<int, int>> kept;
    for (int i = 0; i < kh; ++i)
      for (int j = 0; j < kw; ++j) {
        bool any = false;  // masked taps (hidden pixels) are all zero: dropped
        for (int o = 0; o < out && !any; ++o)
          for (int c = 0; c < in && !any; ++c) any = at(o, c, i, j) != 0.0f;
        if (any) kept.emplace_back(i, j);
      }
    offsets.clear();
    w.resize(out, static_cast<Eigen::Index>(kept.size()) * in);
    for (std::size_t t = 0; t < kept.size(); ++t) {
      const auto [i, j] = kept[t];
      offsets.emplace_back(i - g.pad_top, j - g.pad_left);
      for (int o = 0; o < out; ++o)
        for (int c = 0; c < in; ++c) w(o, static_cast<Eigen::Index>(t) * in + c) = at(o, c, i, j);
    }
    bias = Vec::Zero(out);
    if (conv.has_bias())
      for (int o = 0; o < out; ++o) bias[o] = conv.bias().value[o];
  }
  void prepare(std::int64_t B) {
    gathered.resize(w.cols(), B);
    gathered_t.assign(static_cast<std::size_t>(w.cols() * padded_batch(B)), 0.0f);
  }
  // Positions its input cache must keep: only the current one when the only tap is it.
  std::int64_t input_positions(std::int64_t P) const {
    return offsets.size() == 1 && offsets[0] == std::pair<int, int>{0, 0} ? 1 : P;
  }

  // y [out x B] = conv(x) at (r, c) of an H x W map; x caches the input.
  void eval(const MapCache& x, int r, int c, int H, int W, Mat& y) {
    for (std::size_t t = 0; t < offsets.size(); ++t) {
      const int rr = r + offsets[t].first, cc = c + offsets[t].second;
      auto rows = gathered.middleRows(static_cast<Eigen::Index>(t) * in, in);
      if (rr < 0 || rr >= H || cc < 0 || cc >= W)
        rows.setZero();  // zero padding
      else
        rows = x.column(static_cast<std::int64_t>(rr) * W + cc);
    }
    affine(w, bias, gathered, y, gathered_t.data());
  }
};

// A weight-normalised linear layer (the attention's query, key and value).
struct PositionLinear {
  RowMat w;  // [out x in]
  Vec bias;
  void build(Context<Cpu>& ctx, nn::WNLinear<float, Cpu>& lin) {
    Tensor<float, Cpu> weight, inv_norm;
    nn::weight_norm_forward(ctx, lin.weight_g().value, lin.weight_v().value, weight, inv_norm);
    const std::int64_t out = weight.dim(0), in = weight.dim(1);
    w.resize(out, in);
    for (std::int64_t o = 0; o < out; ++o)
      for (std::int64_t i = 0; i < in; ++i) w(o, i) = weight[o * in + i];
    bias = Vec::Zero(out);
    if (lin.bias().value.numel() == out)
      for (std::int64_t o = 0; o < out; ++o) bias[o] = lin.bias().value[o];
  }
  void eval(const Mat& x, Mat& y) const { affine(w, bias, x, y); }
};

// GatedResBlock at one position (see nn/gated_res_block.hpp for the function).
struct PositionGatedBlock {
  int in = 0, channel = 0;
  PositionConv conv1, conv2, aux_conv;
  bool has_aux = false, has_condition = false;
  MapCache a, aux, mid;  // ELU(x), ELU(aux), ELU(conv1 + aux_conv)
  MapCache condition;    // condition_conv(condition) on the whole map, [B][P][2 in]
  Mat h, o, aux_act, ha;

  void build(Context<Cpu>& ctx, nn::GatedResBlock<float, Cpu>& blk) {
    in = blk.in_channels(), channel = blk.channels();
    conv1.build(ctx, blk.conv1());
    conv2.build(ctx, blk.conv2());
    has_aux = blk.has_aux();
    if (has_aux) aux_conv.build(ctx, blk.aux_conv());
    has_condition = blk.has_condition();
  }
  void reset(std::int64_t B, std::int64_t P) {
    a.reset(B, conv1.input_positions(P), in);
    mid.reset(B, conv2.input_positions(P), channel);
    conv1.prepare(B);
    conv2.prepare(B);
    if (has_aux) aux_conv.prepare(B);
    if (has_aux) {
      aux.reset(B, aux_conv.input_positions(P), aux_conv.in);
      aux_act.resize(aux_conv.in, B);
      ha.resize(channel, B);
    }
    h.resize(channel, B);
    o.resize(2 * in, B);
  }
  // y [in x B] = block(x, aux) at position p = r * W + c.
  void step(const Mat& x, const Mat* aux_in, int r, int c, int H, int W, Mat& y) {
    const std::int64_t p = static_cast<std::int64_t>(r) * W + c, B = a.batch;
    y = x;
    map_inplace(y, elu);
    a.store(p, y);  // y now holds ELU(x), the skip
    conv1.eval(a, r, c, H, W, h);
    if (has_aux) {
      aux_act = *aux_in;  // [aux_channel x B]
      map_inplace(aux_act, elu);
      aux.store(p, aux_act);
      aux_conv.eval(aux, r, c, H, W, ha);
      h += ha;
    }
    map_inplace(h, elu);
    mid.store(p, h);
    conv2.eval(mid, r, c, H, W, o);
    if (has_condition) o += condition.column(p);
    for (std::int64_t b = 0; b < B; ++b)
      for (int k = 0; k < in; ++k) y(k, b) += ops::Glu::forward(o(k, b), o(k + in, b));
  }
};

}  // namespace cached_detail

template <class Model>
class CachedSampler {
 public:
  using Config = typename Model::ConfigType;
  static constexpr int H = Config::height, W = Config::width, P = Config::height * Config::width;
  static constexpr int C = Config::channel, NC = Config::n_class;

  explicit CachedSampler(Model& model) : model_(model) {}

  // Draws the codes of r (see SampleRequest) with the model's current weights.
  void sample(Context<Cpu>& ctx, const SampleRequest& r, const SampleOptions& opt) {
    check_request<Model>(r, opt);
    const bool was_training = ctx.training;
    ctx.training = false;
    // The products here are small (N = batch): Eigen's own threading of each one costs
    // more than it saves; affine() splits the large ones across the threads instead.
    const int eigen_threads = Eigen::nbThreads();
    Eigen::setNbThreads(1);
    begin(ctx, r.codes->dim(0), r.condition);
    Tensor<std::int32_t, Cpu>& codes = *r.codes;
    const std::int64_t B = codes.dim(0);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t p = r.start; p < P; ++p) codes[b * P + p] = 0;
    for (std::int64_t p = 0; p < P; ++p) {
      step(codes, static_cast<int>(p));
      if (p < r.start) continue;  // the prefix is given: its layers are cached, nothing is drawn
      for (std::int64_t b = 0; b < B; ++b) {
        const double u = sampling_uniform(opt.seed, r.first_sample + b, p, P);
        codes[b * P + p] = draw_code(logits_.col(b).data(), 1, NC, opt, u, scratch_);
      }
    }
    Eigen::setNbThreads(eigen_threads);
    ctx.training = was_training;
  }

  // The logits [n_class x B] of the last step (for tests).
  const cached_detail::Mat& logits() const { return logits_; }

  // Reads the weights, sizes every cache for batch B and runs the conditioning once.
  void begin(Context<Cpu>& ctx, std::int64_t B, const Tensor<std::int32_t, Cpu>* condition) {
    using namespace cached_detail;
    batch_ = B;
    build_stem(ctx, model_.horizontal().conv(), horizontal_);
    build_stem(ctx, model_.vertical().conv(), vertical_);
    blocks_.clear();
    for (auto& blk : model_.blocks()) {
      auto pb = std::make_unique<PositionPixelBlock>();
      pb->attention = blk->has_attention();
      for (auto& res : blk->resblocks()) {
        pb->res.emplace_back();
        pb->res.back().build(ctx, *res);
      }
      if (pb->attention) {
        auto& att = blk->causal_attention();
        pb->key.build(ctx, blk->key_resblock());
        pb->query.build(ctx, blk->query_resblock());
        pb->out_res.build(ctx, blk->out_resblock());
        pb->q.build(ctx, att.query());
        pb->k.build(ctx, att.key());
        pb->v.build(ctx, att.value());
        pb->heads = att.heads();
        pb->att_channels = att.channels();
      } else {
        pb->out.build(ctx, blk->out_conv());
      }
      blocks_.push_back(std::move(pb));
    }
    out_res_.clear();
    for (auto& res : model_.out_resblocks()) {
      out_res_.emplace_back();
      out_res_.back().build(ctx, *res);
    }
    head_.build(ctx, model_.head());

    // Caches and per-position scratch for batch B.
    x_.resize(C, B), y_.resize(C, B), bg_.resize(2, B), logits_.resize(NC, B),
        head_in_.reset(B, head_.input_positions(P), C);
    for (auto& pb : blocks_) {
      for (auto& res : pb->res) res.reset(B, P);
      if (pb->attention) {
        pb->key.reset(B, P), pb->query.reset(B, P), pb->out_res.reset(B, P);
        pb->keys.reset(B, P, pb->att_channels), pb->values.reset(B, P, pb->att_channels);
        pb->key_in.resize(2 * C + 2, B), pb->query_in.resize(C + 2, B);
        pb->key_out.resize(2 * C + 2, B), pb->query_out.resize(C + 2, B);
        pb->qv.resize(pb->att_channels, B), pb->kv.resize(pb->att_channels, B), pb->vv.resize(pb->att_channels, B);
        pb->att_out.resize(pb->att_channels, B), pb->scores.assign(static_cast<std::size_t>(max_threads()) * P, 0.0f);
      } else {
        pb->cat.reset(B, pb->out.input_positions(P), C + 2);
        pb->cat_col.resize(C + 2, B);
        pb->out.prepare(B);
      }
      pb->res_out.resize(C, B);
    }
    for (auto& res : out_res_) res.reset(B, P);
    head_.prepare(B);

    // The condition: the conditioning network once, then every block's 1x1 projection once.
    if constexpr (Config::conditioned) {
      VQVAE2_CHECK(condition != nullptr, "CachedSampler: this prior needs the top codes as its condition.");
      nn::Upsample2x<float, Cpu> up;
      const Tensor<float, Cpu>& cond = up.forward(ctx, model_.cond_resnet().forward(ctx, *condition));
      std::size_t i = 0;
      for (auto& blk : model_.blocks()) {
        std::size_t k = 0;
        for (auto& res : blk->resblocks()) {
          if (res->has_condition())
            blocks_[i]->res[k].condition.load_nchw(res->condition_conv().forward(ctx, nn::borrow(cond)));
          ++k;
        }
        ++i;
      }
    }
  }

  // Runs every layer at position p (codes before p must be final) into logits().
  void step(const Tensor<std::int32_t, Cpu>& codes, int p) {
    const int r = p / W, c = p % W;
    // Input stem: shift_down(horizontal) + shift_right(vertical), one-hot gathers.
    x_.setZero();
    if (r > 0) add_stem(horizontal_, codes, r - 1, c, x_);
    if (c > 0) add_stem(vertical_, codes, r, c - 1, x_);
    for (std::int64_t b = 0; b < batch_; ++b) {
      bg_(0, b) = static_cast<float>((static_cast<double>(r) - H / 2.0) / H);
      bg_(1, b) = static_cast<float>((static_cast<double>(c) - W / 2.0) / W);
    }
    for (auto& pb : blocks_) pb->step(x_, bg_, r, c, y_), std::swap(x_, y_);
    for (auto& res : out_res_) res.step(x_, nullptr, r, c, H, W, y_), std::swap(x_, y_);
    cached_detail::map_inplace(x_, cached_detail::elu);
    head_in_.store(p, x_);
    head_.eval(head_in_, r, c, H, W, logits_);
  }

 private:
  struct StemConv {
    struct Tap {
      int di, dj;
      cached_detail::Mat w;  // [out x n_class]: column k is the tap's weight for code k
    };
    std::vector<Tap> taps;
    cached_detail::Vec bias;
  };

  struct PositionPixelBlock {
    bool attention = false;
    std::vector<cached_detail::PositionGatedBlock> res;
    cached_detail::PositionGatedBlock key, query, out_res;
    cached_detail::PositionLinear q, k, v;
    cached_detail::PositionConv out;
    cached_detail::MapCache keys, values, cat;
    int heads = 1, att_channels = 0;
    cached_detail::Mat res_out, cat_col, key_in, query_in, key_out, query_out, qv, kv, vv, att_out;
    std::vector<float> scores;

    void step(const cached_detail::Mat& x, const cached_detail::Mat& bg, int r, int c, cached_detail::Mat& y) {
      const std::int64_t p = static_cast<std::int64_t>(r) * W + c, B = x.cols();
      res_out = x;
      for (auto& blk : res) {
        blk.step(res_out, nullptr, r, c, H, W, y);
        std::swap(res_out, y);
      }
      if (!attention) {
        cat_col.topRows(C) = res_out;
        cat_col.bottomRows(2) = bg;
        cat.store(p, cat_col);
        out.eval(cat, r, c, H, W, y);
        return;
      }
      // The key reads ELU(x) when a residual block ran (the reference's in-place ELU).
      key_in.topRows(C) = x;
      if (!res.empty())
        for (std::int64_t b = 0; b < B; ++b)
          for (int k = 0; k < C; ++k) key_in(k, b) = cached_detail::elu(key_in(k, b));
      key_in.middleRows(C, C) = res_out;
      key_in.bottomRows(2) = bg;
      key.step(key_in, nullptr, r, c, H, W, key_out);
      query_in.topRows(C) = res_out;
      query_in.bottomRows(2) = bg;
      query.step(query_in, nullptr, r, c, H, W, query_out);
      k.eval(key_out, kv);
      v.eval(key_out, vv);
      q.eval(query_out, qv);
      keys.store(p, kv);
      values.store(p, vv);
      attend(p, B);
      out_res.step(res_out, &att_out, r, c, H, W, y);
    }

    // Causal attention of position p over j < p; position 0 attends to nothing (zero).
    void attend(std::int64_t p, std::int64_t B) {
      const int d = att_channels / heads;
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      att_out.setZero();
      if (p == 0) return;
      const int items = static_cast<int>(B) * heads;
#pragma omp parallel for schedule(static) if (static_cast <std::int64_t>(items) * p * d >= (1 << 15))
      for (int item = 0; item < items; ++item) {
        const std::int64_t b = item / heads;
        const int h = item % heads;
#if defined(_OPENMP)
        float* sc = scores.data() + static_cast<std::size_t>(omp_get_thread_num()) * P;
#else
        float* sc = scores.data();
#endif
        const float* qh = qv.col(b).data() + h * d;
        float m = -INFINITY;
        for (std::int64_t j = 0; j < p; ++j) {
          const float* kj = keys.at(b, j) + h * d;
          float s = 0;
          for (int e = 0; e < d; ++e) s += qh[e] * kj[e];
          sc[j] = s * scale;
          m = std::max(m, sc[j]);
        }
        float sum = 0;
        for (std::int64_t j = 0; j < p; ++j) sum += sc[j] = std::exp(sc[j] - m);
        float* o = att_out.col(b).data() + h * d;
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < p; ++j) {
          const float w = sc[j] * inv;
          const float* vj = values.at(b, j) + h * d;
          for (int e = 0; e < d; ++e) o[e] += w * vj[e];
        }
      }
    }
  };

  static void build_stem(Context<Cpu>& ctx, nn::WNConv2d<float, Cpu>& conv, StemConv& s) {
    const Tensor<float, Cpu>& w = conv.compute_weight(ctx);
    const int kh = conv.kernel_h(), kw = conv.kernel_w(), in = conv.in_channels(), out = conv.out_channels();
    const ops::ConvGeometry& g = conv.geometry();
    s.taps.clear();
    for (int i = 0; i < kh; ++i)
      for (int j = 0; j < kw; ++j) {
        typename StemConv::Tap t{i - g.pad_top, j - g.pad_left, cached_detail::Mat(out, in)};
        for (int o = 0; o < out; ++o)
          for (int k = 0; k < in; ++k) t.w(o, k) = w[((static_cast<std::int64_t>(o) * in + k) * kh + i) * kw + j];
        s.taps.push_back(std::move(t));
      }
    s.bias = cached_detail::Vec::Zero(out);
    if (conv.has_bias())
      for (int o = 0; o < out; ++o) s.bias[o] = conv.bias().value[o];
  }

  // y += the stem convolution of the one-hot codes at (r, c).
  void add_stem(const StemConv& s, const Tensor<std::int32_t, Cpu>& codes, int r, int c, cached_detail::Mat& y) const {
    for (std::int64_t b = 0; b < batch_; ++b) {
      auto yb = y.col(b);
      yb += s.bias;
      for (const auto& t : s.taps) {
        const int rr = r + t.di, cc = c + t.dj;
        if (rr < 0 || rr >= H || cc < 0 || cc >= W) continue;
        yb += t.w.col(codes[b * P + static_cast<std::int64_t>(rr) * W + cc]);
      }
    }
  }

  static int max_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  Model& model_;
  std::int64_t batch_ = 0;
  StemConv horizontal_, vertical_;
  std::vector<std::unique_ptr<PositionPixelBlock>> blocks_;
  std::vector<cached_detail::PositionGatedBlock> out_res_;
  cached_detail::PositionConv head_;
  cached_detail::MapCache head_in_;
  cached_detail::Mat x_, y_, bg_, logits_;
  DrawScratch scratch_;
};

}  // namespace vqvae2::sample
