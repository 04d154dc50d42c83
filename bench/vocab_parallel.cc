// vocab_parallel.cc — one training step's loss and logits gradient with the class axis sharded over MPI processes
// (xent_mpi_cross_entropy_grad) against the naive approach: gather every shard's logits onto rank 0, run the
// single-process op there (xent_cross_entropy_grad, in place), scatter the gradient's shards back. Run under mpirun
// by bench/vocab_parallel.py:
//   mpirun -np P xent_vocab_parallel_bench N V DTYPE REPEATS [--no-naive]
// Each rank holds logits [N, V/P] (V divisible by P) and the same class-index targets; gradients are written in
// place over the logits. Prints one JSON line (rank 0): the median seconds per step of each approach and the bytes
// each moves per step (payloads of the collectives, as the MPI calls are given them).

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "xent/half.h"
#include "xent/xent_mpi.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void check(xent_status s) {
  if (s != XENT_OK) {
    std::fprintf(stderr, "xent: %s\n", xent_last_error_message());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 5) {
    if (rank == 0) std::fprintf(stderr, "usage: %s N V float32|bfloat16 REPEATS [--no-naive]\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  const int64_t N = std::stoll(argv[1]), V = std::stoll(argv[2]);
  const bool bf16 = std::string(argv[3]) == "bfloat16";
  const int repeats = std::stoi(argv[4]);
  const bool naive = !(argc > 5 && std::string(argv[5]) == "--no-naive");
  const xent_dtype dtype = bf16 ? XENT_BFLOAT16 : XENT_FLOAT32;
  const int64_t element = bf16 ? 2 : 4;
  const int64_t Vl = V / size, start = rank * Vl;

  // The shard's logits (regenerated before each step: the gradient overwrites them) and the targets.
  std::vector<unsigned char> shard(static_cast<size_t>(N * Vl * element));
  std::mt19937 rng(7 + rank);
  std::normal_distribution<float> normal;
  std::vector<unsigned char> pattern(static_cast<size_t>(Vl * element));
  for (int64_t j = 0; j < Vl; ++j) {
    const float v = 2 * normal(rng);
    if (bf16) reinterpret_cast<xent::bfloat16*>(pattern.data())[j] = xent::to_bfloat16(v);
    else reinterpret_cast<float*>(pattern.data())[j] = v;
  }
  const auto fill = [&] {
    for (int64_t i = 0; i < N; ++i) std::memcpy(shard.data() + i * Vl * element, pattern.data(), pattern.size());
  };
  std::vector<int64_t> targets(static_cast<size_t>(N));
  std::mt19937 shared(11);
  for (auto& t : targets) t = static_cast<int64_t>(shared() % static_cast<uint32_t>(V));
  const int64_t shape[] = {N, Vl}, rows[] = {N};
  const xent_tensor x = xent_make_tensor(shard.data(), dtype, 2, shape, nullptr);
  const xent_tensor t = xent_make_tensor(targets.data(), XENT_INT64, 1, rows, nullptr);
  float loss_value = 0;
  uint16_t loss16 = 0;
  const xent_tensor loss = xent_make_tensor(bf16 ? static_cast<void*>(&loss16) : &loss_value, dtype, 0, nullptr, nullptr);
  const xent_loss_options o = xent_default_loss_options();

  std::vector<double> sharded_s, naive_s;
  for (int r = 0; r < repeats + 1; ++r) {  // the first step warms up
    fill();
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    check(xent_mpi_cross_entropy_grad(&x, &t, -1, start, &o, MPI_COMM_WORLD, MPI_COMM_NULL, nullptr, &loss, &x));
    MPI_Barrier(MPI_COMM_WORLD);
    if (r > 0) sharded_s.push_back(MPI_Wtime() - t0);
  }
  if (naive) {
    // Rank 0 receives each shard as a block of columns of the full [N, V] logits.
    MPI_Datatype column_block, resized, row, contiguous;
    const MPI_Datatype base = bf16 ? MPI_UINT16_T : MPI_FLOAT;
    MPI_Type_vector(static_cast<int>(N), static_cast<int>(Vl), static_cast<int>(V), base, &column_block);
    MPI_Type_create_resized(column_block, 0, Vl * element, &resized);
    MPI_Type_commit(&resized);
    MPI_Type_contiguous(static_cast<int>(Vl), base, &row);  // N·Vl may pass INT_MAX: rows of a shard
    MPI_Type_contiguous(static_cast<int>(N), row, &contiguous);
    MPI_Type_commit(&contiguous);
    std::vector<unsigned char> full(rank == 0 && size > 1 ? static_cast<size_t>(N * V * element) : 0);
    const int64_t full_shape[] = {N, V};
    const xent_tensor fx = xent_make_tensor(full.data(), dtype, 2, full_shape, nullptr);
    for (int r = 0; r < repeats + 1; ++r) {
      fill();
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      if (size == 1) {  // one process holds every logit: the single-process op, nothing gathered
        check(xent_cross_entropy_grad(&x, &t, -1, &o, nullptr, &loss, &x));
      } else {
        MPI_Gather(shard.data(), 1, contiguous, full.data(), 1, resized, 0, MPI_COMM_WORLD);
        if (rank == 0) check(xent_cross_entropy_grad(&fx, &t, -1, &o, nullptr, &loss, &fx));
        MPI_Scatter(full.data(), 1, resized, shard.data(), 1, contiguous, 0, MPI_COMM_WORLD);
        MPI_Bcast(bf16 ? static_cast<void*>(&loss16) : &loss_value, 1, base, 0, MPI_COMM_WORLD);
      }
      MPI_Barrier(MPI_COMM_WORLD);
      if (r > 0) naive_s.push_back(MPI_Wtime() - t0);
    }
    MPI_Type_free(&resized);
    MPI_Type_free(&column_block);
    MPI_Type_free(&contiguous);
    MPI_Type_free(&row);
  }
  if (rank == 0) {
    // Payloads per step. Sharded (xent_mpi.h): allgather of 40 bytes per process, all-reduces of 16 bytes, of the
    // row statistics (32 bytes per row) and of 8 bytes. Naive: every logit but rank 0's to rank 0 and the gradient
    // back, plus the loss.
    const double sharded_bytes = 40.0 * size + 16 + 32.0 * N + 8;
    const double naive_bytes = 2.0 * N * (V - Vl) * element + element;
    std::printf("{\"ranks\": %d, \"N\": %lld, \"V\": %lld, \"dtype\": \"%s\", \"sharded_s\": %.6f, "
                "\"sharded_bytes\": %.0f, \"naive_s\": %.6f, \"naive_bytes\": %.0f}\n",
                size, static_cast<long long>(N), static_cast<long long>(V), argv[3], median(sharded_s),
                sharded_bytes, naive ? median(naive_s) : -1.0, naive ? naive_bytes : -1.0);
  }
  MPI_Finalize();
  return 0;
}
