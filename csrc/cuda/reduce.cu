// reduce.cu -- the bias gradients of conv2d and the dense layer as deterministic two-stage grid
// reductions (conv2d_backward_bias, linear_backward_bias; launch.h):
//     db[k] = sum over n < N, l < L of dy[(n*K + k)*L + l]     (conv: L = P*Q; dense: L = 1)
// Stage 1: a grid of (channels x chunks) blocks; block (k, g) sums a fixed chunk of channel k's
// values in a fixed order (each thread a strided run in increasing order, its indices stepped
// with one carry, no division in the loop; then block_sum's fixed tree, or for the dense
// layout a fixed tree over 8 row lanes) and writes partial[k*G + g]. Stage 2: one thread per
// channel adds its G partials in order g = 0, 1, .... With G == 1 stage 1 writes db directly
// and no workspace is used. Which block computes which (k, g) (the launch caps, the grid-stride
// rounds) never changes the bits: the chunks, their order and the trees are functions of
// (N, K, L) alone.
// The chunk rule (bias_chunks): aim at kTargetBlocks stage-1 blocks (2 per SM of a 132-SM
// H100 / H200), at least kMinValues values per channel chunk (16 per thread) or kMinRows rows per
// dense chunk (8 per row lane), at most kMaxChunks. It deliberately uses the shapes only, not
// the GPU's SM count: the bits are then the same on every GPU.
// Two layouts:
//  * L > 1 (conv): a block per (channel, chunk), 256 threads on consecutive flat indices
//    j = n*L + l of the channel (contiguous runs of L floats: coalesced when L >= 32);
//  * L == 1 (dense, and conv outputs of 1 x 1): a block per (32 columns, row chunk), 32 columns
//    x 8 row lanes, consecutive threads on consecutive columns (coalesced).
// Napkin: the seeds' conv2 at batch 64 (K 64, L 576: 2.4 M floats, 9.4 MB): 5 chunks of
// 7424 values -> 320 blocks (2.4 waves of 132), ~2 us at HBM speed, where one block per
// channel ran 64 blocks (half the SMs idle). Dense 9216 -> 128 at batch 256: 4 column tiles x 4
// row chunks of 64 = 16 blocks (the whole of dy is 128 KB).
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

constexpr int64_t kTargetBlocks = 264, kMinValues = 4096, kMinRows = 64, kMaxChunks = 1024;
constexpr int kCols = 32, kLanes = kThreads / kCols;  // the dense layout's block

struct Chunks {
  int64_t G = 1, len = 1;  // G chunks of len values (channel layout) / rows (dense layout)
};

// The fixed chunking of a reduction of `count` values (rows) per channel over `units` column
// units (channels, or 32-column tiles), each chunk a multiple of `align`.
Chunks chunks_of(int64_t units, int64_t count, int64_t min_len, int64_t align) {
  Chunks c;
  c.len = round_up(imax(count, 1), align);
  const int64_t want = imin(imin(ceil_div(kTargetBlocks, imax(units, 1)), count / min_len),
                            kMaxChunks);
  if (want <= 1) return c;
  c.len = round_up(ceil_div(count, want), align);
  c.G = ceil_div(count, c.len);
  return c;
}

Chunks bias_chunks(int64_t N, int64_t K, int64_t L) {
  if (L == 1) return chunks_of(ceil_div(K, kCols), N, kMinRows, kLanes);
  return chunks_of(K, N * L, kMinValues, kThreads);
}

dim3 grid_blocks(int64_t n) {
  return dim3(static_cast<unsigned>(imax(1, imin(n, FASTCNN_CUDA_MAX_BLOCKS_1D))));
}

// Channel layout. Block (k, g) = blk: thread t sums j = g*len + t, + 256, ... < min(NL, (g+1)*len)
// in order; (n, l) of j divided out once per block and stepped by kThreads = hi*L + lo with one
// carry. out[k*G + g] (out = db when G == 1).
__global__ void __launch_bounds__(kThreads)
    channel_partials_kernel(const float* __restrict__ dy, float* __restrict__ out, int64_t N,
                            int64_t K, int64_t L, int64_t G, int64_t len) {
  __shared__ float smem[kThreads];
  const int64_t NL = N * L, KL = K * L;
  const int64_t lo = kThreads % L, hi = kThreads / L;
  for (int64_t blk = blockIdx.x; blk < K * G; blk += gridDim.x) {
    const int64_t k = blk / G, g = blk - k * G;
    const int64_t j0 = g * len + threadIdx.x, end = imin(NL, (g + 1) * len);
    const int64_t n0 = j0 / L, l0 = j0 - n0 * L;
    float acc = 0.0f;
    int64_t l = l0, off = n0 * KL + k * L + l0;
    for (int64_t j = j0; j < end; j += kThreads) {
      acc += dy[off];
      l += lo;
      const bool carry = l >= L;
      l -= carry ? L : 0;
      off += lo + hi * KL + (carry ? KL - L : 0);
    }
    const float total = block_sum(acc, smem);
    if (threadIdx.x == 0) out[blk] = total;
  }
}

// Dense layout. Block (column tile c, chunk g) = blk: lane = t / 32 sums rows g*len + lane, + 8,
// ... < min(N, (g+1)*len) of column c*32 + t % 32 in order; the 8 lanes then meet in a fixed
// tree. out[col*G + g] (out = db when G == 1).
__global__ void __launch_bounds__(kThreads)
    column_partials_kernel(const float* __restrict__ dy, float* __restrict__ out, int64_t N,
                           int64_t K, int64_t G, int64_t len) {
  __shared__ float smem[kLanes][kCols];
  const int t = threadIdx.x, lane = t / kCols, c = t % kCols;
  const int64_t tiles = ceil_div(K, kCols);
  for (int64_t blk = blockIdx.x; blk < tiles * G; blk += gridDim.x) {
    const int64_t ct = blk / G, g = blk - ct * G;
    const int64_t col = ct * kCols + c, end = imin(N, (g + 1) * len);
    float acc = 0.0f;
    if (col < K)
      for (int64_t i = g * len + lane, off = i * K + col; i < end; i += kLanes, off += kLanes * K)
        acc += dy[off];
    smem[lane][c] = acc;
    __syncthreads();
#pragma unroll
    for (int h = kLanes / 2; h > 0; h >>= 1) {
      if (lane < h) smem[lane][c] = smem[lane][c] + smem[lane + h][c];
      __syncthreads();
    }
    if (lane == 0 && col < K) out[col * G + g] = smem[0][c];
    __syncthreads();  // smem is reused by the next tile
  }
}

// Stage 2: db[k] = partial[k*G] + partial[k*G + 1] + ... in order.
__global__ void __launch_bounds__(kThreads)
    finish_kernel(const float* __restrict__ partial, float* __restrict__ db, int64_t K,
                  int64_t G) {
  for (int64_t k = global_thread(); k < K; k += grid_threads()) {
    const float* p = partial + k * G;
    float s = p[0];
    for (int64_t g = 1; g < G; ++g) s += p[g];
    db[k] = s;
  }
}

void bias_grad(const char* what, const float* dy, float* db, float* ws, int64_t N, int64_t K,
               int64_t L, Stream stream) {
  if (K <= 0) return;
  const Chunks c = bias_chunks(N, K, L);
  float* out = c.G > 1 ? ws : db;
  FASTCNN_CHECK(out != nullptr, what, ": the bias reduction needs a workspace of ", K * c.G,
                " floats, got none");
  if (L == 1)
    launch(what, column_partials_kernel, grid_blocks(ceil_div(K, kCols) * c.G), dim3(kThreads),
           stream, dy, out, N, K, c.G, c.len);
  else
    launch(what, channel_partials_kernel, grid_blocks(K * c.G), dim3(kThreads), stream, dy, out,
           N, K, L, c.G, c.len);
  if (c.G > 1)
    launch(what, finish_kernel, grid_1d(K), dim3(kThreads), stream,
           static_cast<const float*>(ws), db, K, c.G);
}

int64_t bias_workspace(int64_t N, int64_t K, int64_t L) {
  if (K <= 0) return 0;
  const Chunks c = bias_chunks(N, K, L);
  return c.G > 1 ? K * c.G : 0;
}

}  // namespace

int64_t conv2d_backward_bias_workspace(int64_t N, int64_t K, int64_t L) {
  return bias_workspace(N, K, L);
}

void conv2d_backward_bias(const float* dy, float* db, float* ws, int64_t N, int64_t K, int64_t L,
                          Stream stream) {
  bias_grad("conv2d_backward (db)", dy, db, ws, N, K, L, stream);
}

int64_t linear_backward_bias_workspace(int64_t N, int64_t cols) {
  return bias_workspace(N, cols, 1);
}

void linear_backward_bias(const float* dy, float* db, float* ws, int64_t N, int64_t cols,
                          Stream stream) {
  bias_grad("linear_backward (db)", dy, db, ws, N, cols, 1, stream);
}

}  // namespace fastcnn::cuda
