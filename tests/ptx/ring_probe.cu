// tests/ptx/ring_probe.cu: compiled to PTX only. Each extern "C" kernel wraps one ring path
// so tests/ptx_ordering_test.cpp can find its body and check the memory operations nvcc
// emitted for it.
#include <pkrt/ring.hpp>

extern "C" __global__ void pkrt_probe_publish(pkrt::RingHeader* ring, pkrt::Envelope env, int* ok) {
  pkrt::RingProducer producer(ring);
  *ok = producer.try_publish(0x1000, 0, 1, env) ? 1 : 0;
}

// A run of two staged slots made readable with one store of `published` (the block's K2H
// path while it applies a run of commands).
extern "C" __global__ void pkrt_probe_stage_run(pkrt::RingHeader* ring, pkrt::Envelope env, int* ok) {
  pkrt::RingProducer producer(ring);
  const bool first = producer.try_stage(0x1000, 0, 1, env);
  const bool second = producer.try_stage(0x1000, 0, 2, env);
  producer.publish_staged();
  *ok = first && second ? 1 : 0;
}

extern "C" __global__ void pkrt_probe_poll(pkrt::RingHeader* ring, pkrt::Slot* out, int* ok) {
  pkrt::RingConsumer consumer(ring);
  *ok = consumer.try_consume(*out) ? 1 : 0;
}

#include <pkrt/kernels/crc32.hpp>

// The kernels' CRC32 compiled for the device: tables in __constant__ memory.
extern "C" __global__ void pkrt_probe_crc32(const unsigned char* data, unsigned long long n,
                                            unsigned* out) {
  *out = pkrt::crc::crc32_update(0, data, n);
}

#include <pkrt/detail/block_platform.hpp>

// The device's grid barrier as the kernel runs it (sync_grid): a block barrier, thread 0's
// device-scope release add, acquire polls with a sleep between them, a block barrier.
extern "C" __global__ void pkrt_probe_grid_barrier(pkrt::detail::GridBarrierWord* word) {
  const pkrt::detail::BlockEnv env{blockIdx.x, nullptr, nullptr, word, 64, 2000};
  pkrt::detail::sync_grid(env);
}

#include <pkrt/kernels/h2k_stage.hpp>

// A block's copy of a run of H2K slots (stage_h2k_run) as the kernel runs it: thread 0 sets
// the bounds, a block barrier, every thread's acquire load of its slot's seq and copy, a block
// barrier; then thread 0 commits the run with the ring's head.
extern "C" __global__ void pkrt_probe_h2k_stage(pkrt::RingHeader* ring, unsigned count, pkrt::Slot* out) {
  __shared__ pkrt::detail::H2KStage stage;
  pkrt::RingConsumer consumer(ring);
  if (threadIdx.x == 0) {
    stage.ring = consumer.slots();
    stage.first = consumer.position();
    stage.count = count;
  }
  const unsigned n = pkrt::detail::stage_h2k_run(stage);
  if (threadIdx.x == 0) {
    for (unsigned i = 0; i < n; ++i) {
      out[i] = stage.slots[i];
      consumer.advance();
    }
    consumer.commit();
  }
}
